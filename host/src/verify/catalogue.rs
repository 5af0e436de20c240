//! The provider catalogue: where a route's `provider = "…"` is found. In
//! order: the presets of the plugin manifest declaring the route (deployed
//! with it to every instance), the operator's folder (`PROVIDERS_DIR`,
//! `<name>.toml`, read whenever routes are built, so a preset added there
//! serves the next route built without a restart), then the presets shipped
//! in the repository (`host/providers/*.toml`, built into the binary).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow, bail};

use super::preset::Preset;

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../providers/", $name, ".toml")))),*]
    };
}

/// The shipped presets' files, by name.
const BUILTIN: &[(&str, &str)] = builtin![
    "asana",
    "aws-sns",
    "bitbucket",
    "box",
    "calendly",
    "clerk",
    "coinbase-commerce",
    "contentful",
    "discord",
    "dropbox",
    "fal",
    "fal-hmac",
    "github",
    "gitlab",
    "hubspot",
    "intercom",
    "jira",
    "lemon-squeezy",
    "linear",
    "mailgun",
    "meta",
    "microsoft-graph",
    "mux",
    "netlify",
    "okta",
    "openai",
    "paddle",
    "pagerduty",
    "plaid",
    "postmark",
    "replicate",
    "resend",
    "segment",
    "sendgrid",
    "sentry",
    "shopify",
    "slack",
    "square",
    "standard-webhooks",
    "stripe",
    "svix",
    "trello",
    "twilio",
    "twitch",
    "typeform",
    "vercel",
    "zoom",
];

fn builtins() -> &'static [Arc<Preset>] {
    static PARSED: OnceLock<Vec<Arc<Preset>>> = OnceLock::new();
    PARSED.get_or_init(|| {
        BUILTIN
            .iter()
            .map(|(_, text)| Arc::new(Preset::parse(text).expect("a shipped preset parses (unit-tested)")))
            .collect()
    })
}

/// The shipped preset named `name`.
pub fn builtin(name: &str) -> Result<Arc<Preset>> {
    builtins()
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| anyhow!("unknown provider {name:?} (known: {})", names().join(", ")))
}

/// Every shipped preset, sorted by name.
pub fn all_builtin() -> &'static [Arc<Preset>] {
    builtins()
}

/// Every shipped preset's name, sorted.
pub fn names() -> Vec<&'static str> {
    builtins().iter().map(|p| p.name.as_str()).collect()
}

/// Where presets are looked up for one route.
#[derive(Clone, Copy, Default)]
pub struct Lookup<'a> {
    /// The declaring manifest's own presets.
    pub declared: &'a [Preset],
    /// The operator's folder.
    pub dir: Option<&'a Path>,
}

impl Lookup<'_> {
    /// The preset named `name`, from the first place that has it.
    pub fn find(&self, name: &str) -> Result<Arc<Preset>> {
        if let Some(preset) = self.declared.iter().find(|p| p.name == name) {
            return Ok(Arc::new(preset.clone()));
        }
        if let Some(dir) = self.dir
            && let Some(preset) = from_dir(dir, name)?
        {
            return Ok(preset);
        }
        builtin(name)
    }

    /// Every preset this lookup can see, each name once (the first wins).
    pub fn all(&self) -> Result<Vec<Arc<Preset>>> {
        let mut all: Vec<Arc<Preset>> = self.declared.iter().cloned().map(Arc::new).collect();
        if let Some(dir) = self.dir {
            for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "toml")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                    && let Some(preset) = from_dir(dir, stem)?
                {
                    all.push(preset);
                }
            }
        }
        all.extend(builtins().iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|p| seen.insert(p.name.clone()));
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }
}

/// `dir/<name>.toml`, if there is one; a broken file is an error naming it.
fn from_dir(dir: &Path, name: &str) -> Result<Option<Arc<Preset>>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!("provider name {name:?} must be lowercase letters, digits or '-'");
    }
    let path = dir.join(format!("{name}.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let preset = Preset::parse(&text).with_context(|| format!("{}", path.display()))?;
    if preset.name != name {
        bail!(
            "{} names provider {:?}; the file must be named after it",
            path.display(),
            preset.name
        );
    }
    Ok(Some(Arc::new(preset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_preset_parses_cites_its_docs_and_is_listed_once() {
        for (name, text) in BUILTIN {
            let preset = Preset::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(preset.name, *name);
            assert!(preset.docs.starts_with("https://"), "{name}");
        }
        let names = names();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, each once: {names:?}"
        );
        assert!(names.len() >= 40, "{}", names.len());
        // Every file of host/providers is built in.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        assert_eq!(files, names);
        assert!(builtin("nope").unwrap_err().to_string().contains("github"));
    }

    #[test]
    fn a_folder_adds_and_overrides_presets_and_names_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let acme = "name = \"acme\"\ndocs = \"https://acme.test/webhooks\"\n[signature]\nalgorithm = \"hmac-sha256\"\nheader = \"X-Acme-Signature\"\n";
        std::fs::write(dir.path().join("acme.toml"), acme).unwrap();
        let lookup = Lookup {
            declared: &[],
            dir: Some(dir.path()),
        };
        assert_eq!(lookup.find("acme").unwrap().name, "acme");
        assert_eq!(
            lookup.find("slack").unwrap().signature.header.as_deref(),
            Some("X-Slack-Signature")
        );
        std::fs::write(dir.path().join("slack.toml"), acme.replace("acme", "slack")).unwrap();
        assert_eq!(
            lookup.find("slack").unwrap().signature.header.as_deref(),
            Some("X-Acme-Signature")
        );
        assert!(lookup.all().unwrap().iter().any(|p| p.name == "acme"));
        std::fs::write(dir.path().join("broken.toml"), "name = \"broken\"\n").unwrap();
        let err = format!("{:#}", lookup.find("broken").unwrap_err());
        assert!(err.contains("broken.toml"), "{err}");
        std::fs::write(dir.path().join("misnamed.toml"), acme).unwrap();
        assert!(
            lookup
                .find("misnamed")
                .unwrap_err()
                .to_string()
                .contains("named after")
        );
        assert!(lookup.find("../etc/passwd").is_err());
    }
}
