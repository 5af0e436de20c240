//! GitHub payloads, read only as far as the summary needs; free of the
//! bindings so it is unit-tested natively.

use serde::Deserialize;

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    repository: Option<Named>,
    #[serde(default)]
    sender: Option<Login>,
    #[serde(default)]
    issue: Option<Titled>,
    #[serde(default)]
    pull_request: Option<Titled>,
    #[serde(default)]
    commits: Option<Vec<serde_json::Value>>,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    full_name: String,
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct Titled {
    number: u64,
    title: String,
}

/// What one delivery is about.
#[derive(Debug, PartialEq)]
pub struct Delivery {
    pub kind: String,
    pub repository: String,
    pub action: Option<String>,
    pub sender: Option<String>,
    /// `#12 Title` of the issue or pull request, if any.
    pub subject: Option<String>,
    pub commits: Option<usize>,
    pub git_ref: Option<String>,
}

/// Keeps a value usable as one storage-key segment.
pub fn segment(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned.to_string()
    }
}

impl Delivery {
    pub fn parse(kind: &str, body: &[u8]) -> Result<Self, String> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("not a GitHub payload: {e}"))?;
        let repository = raw
            .repository
            .map(|r| r.full_name)
            .filter(|n| n.contains('/'))
            .ok_or("the payload names no repository")?;
        Ok(Self {
            kind: kind.to_string(),
            repository,
            action: raw.action,
            sender: raw.sender.map(|s| s.login),
            subject: raw
                .pull_request
                .or(raw.issue)
                .map(|t| format!("#{} {}", t.number, t.title)),
            commits: raw.commits.map(|c| c.len()),
            git_ref: raw.git_ref,
        })
    }

    /// `owner/repo` as two key segments.
    pub fn repository_path(&self) -> String {
        let (owner, repo) = self
            .repository
            .split_once('/')
            .unwrap_or(("unknown", &self.repository));
        format!("{}/{}", segment(owner), segment(repo))
    }

    /// One line for the chat: who did what where, and the running count.
    pub fn summary(&self, count: i64) -> String {
        let mut line = format!("[{}] {}", self.repository, self.kind);
        if let Some(action) = &self.action {
            line.push(' ');
            line.push_str(action);
        }
        if let Some(subject) = &self.subject {
            line.push_str(&format!(" {subject}"));
        }
        if let Some(commits) = self.commits {
            let branch = self
                .git_ref
                .as_deref()
                .unwrap_or("")
                .trim_start_matches("refs/heads/");
            line.push_str(&format!(" {commits} commit(s) to {branch}"));
        }
        if let Some(sender) = &self.sender {
            line.push_str(&format!(" by {sender}"));
        }
        line.push_str(&format!(" ({count} so far)"));
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_events_summarise_with_subject_and_sender() {
        let body = br#"{"action":"opened","issue":{"number":7,"title":"Crash"},"repository":{"full_name":"acme/app"},"sender":{"login":"ann"}}"#;
        let d = Delivery::parse("issues", body).unwrap();
        assert_eq!(d.repository_path(), "acme/app");
        assert_eq!(
            d.summary(3),
            "[acme/app] issues opened #7 Crash by ann (3 so far)"
        );
    }

    #[test]
    fn pushes_count_commits_and_name_the_branch() {
        let body = br#"{"ref":"refs/heads/main","commits":[{},{}],"repository":{"full_name":"acme/app"},"sender":{"login":"bo"}}"#;
        let d = Delivery::parse("push", body).unwrap();
        assert_eq!(
            d.summary(1),
            "[acme/app] push 2 commit(s) to main by bo (1 so far)"
        );
    }

    #[test]
    fn hostile_names_cannot_escape_their_key() {
        let body = br#"{"repository":{"full_name":"../..%2f/x"}}"#;
        let d = Delivery::parse("push", body).unwrap();
        assert_eq!(d.repository_path(), "unknown/2fx");
        assert!(Delivery::parse("push", br#"{"repository":{"full_name":"noslash"}}"#).is_err());
        assert!(Delivery::parse("push", b"[]").is_err());
    }
}
