//! What the inbox stores and answers: events, their statuses, and the
//! small records its operations take. Plain data, a leaf.

use serde::Serialize;

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Processing,
    Done,
    Dead,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pending, Status::Processing, Status::Done, Status::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Done => "done",
            Status::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A verified delivery, about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub route: String,
    pub delivery_id: String,
    pub received_at_ms: i64,
    /// When a worker may first claim it: `received_at_ms`, or later for a
    /// sync route's delivery, which the instance that took it runs first.
    pub due_at_ms: i64,
    pub headers: StoredPairs,
    pub query: StoredPairs,
    pub body: Vec<u8>,
    /// The request id the HTTP edge decided (nginx's `X-Request-ID` when
    /// acceptable, else one it made): the worker's span carries it.
    pub request_id: Option<String>,
    /// Its ordering key on its route, if the route orders events by one.
    pub order_key: Option<String>,
}

/// Header or query pairs as the inbox stores them: a JSON array of
/// two-string arrays, `[["name","value"],…]`, written once, where the
/// edge reads the request, so that no name or value is copied into a
/// string of its own and the batch writer binds the text as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPairs(String);

impl StoredPairs {
    pub fn new<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let mut text = Vec::with_capacity(256);
        let mut json = serde_json::Serializer::new(&mut text);
        serde::Serializer::collect_seq(&mut json, pairs.into_iter().map(AsPair))
            .expect("string pairs always serialise");
        Self(String::from_utf8(text).expect("serde_json writes UTF-8"))
    }

    pub fn empty() -> Self {
        Self("[]".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One pair, serialised as a two-string array.
struct AsPair<N, V>((N, V));

impl<N: AsRef<str>, V: AsRef<str>> Serialize for AsPair<N, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (name, value) = &self.0;
        (name.as_ref(), value.as_ref()).serialize(serializer)
    }
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    Accepted {
        event_id: String,
    },
    /// The same delivery id was already stored on this route.
    Duplicate {
        event_id: String,
    },
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub route: String,
    pub delivery_id: String,
    pub received_at_ms: i64,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub status: Status,
    /// Attempts started so far, this one included once claimed.
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub lease_owner: Option<String>,
    pub plugin: Option<String>,
    pub plugin_version: Option<String>,
    pub last_error: Option<String>,
    pub finished_at_ms: Option<i64>,
    /// The id of the request that brought it (see [`NewEvent::request_id`]).
    pub request_id: Option<String>,
    /// A follow-up's parent: the event (or `schedule:<name>`) that queued it.
    pub parent_id: Option<String>,
    /// A follow-up's name; none for a delivery.
    pub task: Option<String>,
    /// What puts it in line with others of its route (see
    /// [`NewEvent::order_key`]).
    pub order_key: Option<String>,
}

/// How far behind the inbox is: its running and due events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events running or due now.
    pub runnable: i64,
    /// When the longest-waiting due event became due.
    pub oldest_due_at_ms: Option<i64>,
    /// When the oldest running or due event arrived.
    pub oldest_received_at_ms: Option<i64>,
}

impl Backlog {
    /// How long the oldest due event has waited for a worker (0: none waits).
    pub fn oldest_due_age_secs(&self, now_ms: i64) -> f64 {
        secs_since(self.oldest_due_at_ms, now_ms)
    }

    /// How long ago the oldest running or due event arrived (0: none).
    pub fn processing_lag_secs(&self, now_ms: i64) -> f64 {
        secs_since(self.oldest_received_at_ms, now_ms)
    }
}

/// Seconds from `at_ms` to `now_ms`, never negative; 0 without a time.
fn secs_since(at_ms: Option<i64>, now_ms: i64) -> f64 {
    at_ms.map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0)
}

/// A follow-up an attempt queued (see the `followups` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub name: String,
    pub payload: Vec<u8>,
    pub delay_ms: u64,
}

impl FollowUp {
    /// Its delivery id on the route: the same name and payload are the
    /// same follow-up, whoever queues them and however often.
    pub fn delivery_id(&self) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(self.name.as_bytes());
        hash.update([0]);
        hash.update(&self.payload);
        format!("followup:{}:{}", self.name, &hex::encode(hash.finalize())[..32])
    }
}

/// Follow-ups to store with an attempt's commit, on its route, linked to
/// their parent.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    pub route: &'a str,
    /// The event id (or `schedule:<name>`) that queued them.
    pub parent_id: &'a str,
    /// Carried over from the parent, so their log lines share it.
    pub request_id: Option<&'a str>,
    pub followups: &'a [FollowUp],
}

/// Who is finishing which event, with which plugin version.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    pub event_id: &'a str,
    /// The lease owner that claimed it; a finish from anyone else is ignored.
    pub owner: &'a str,
    /// The attempt it claimed ([`Event::attempts`] as claimed): the claim's
    /// fence. Once the event is claimed again (its lease expired) this
    /// attempt can change nothing, even from the same owner.
    pub attempt: u32,
    pub plugin: &'a str,
    pub plugin_version: Option<&'a str>,
}

/// Which events to list: each field narrows, none lists every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub status: Option<Status>,
    pub route: Option<&'a str>,
}

/// The inbox at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Events per status.
    pub by_status: Vec<(Status, i64)>,
    /// Events received since the given time.
    pub received_since: i64,
    /// Events done since the given time.
    pub done_since: i64,
    /// Whether the done count is PostgreSQL's estimate (a large inbox; see
    /// `DONE_COUNTED_BELOW`) rather than a count.
    pub done_estimated: bool,
}

impl Stats {
    pub fn count(&self, status: Status) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// Whose lease on which schedule a scheduled run commits under.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleGuard<'a> {
    pub plugin: &'a str,
    pub schedule: &'a str,
    pub owner: &'a str,
    /// The lease's new end.
    pub lease_until_ms: i64,
}

/// Which events to replay.
#[derive(Debug, Clone, Copy)]
pub enum Replay<'a> {
    One(&'a str),
    Dead { route: Option<&'a str> },
}

/// A fresh event id: `evt_` and a time-ordered UUID.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_pairs_read_back_as_the_pairs_they_were_made_of() {
        let pairs = [
            ("content-type", "application/json"),
            ("x-quote", "a \"b\" \\ c"),
            ("x-unicode", "привет\u{7}"),
        ];
        let stored = StoredPairs::new(pairs);
        let read: Vec<(String, String)> = serde_json::from_str(stored.as_str()).unwrap();
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(read, expected);
        assert_eq!(
            StoredPairs::new([("a", "1")]).as_str(),
            r#"[["a","1"]]"#,
            "the stored form is an array of two-string arrays"
        );
    }

    #[test]
    fn no_pairs_are_an_empty_array() {
        assert_eq!(StoredPairs::empty().as_str(), "[]");
        assert_eq!(
            StoredPairs::new(Vec::<(String, String)>::new()),
            StoredPairs::empty()
        );
    }
}
