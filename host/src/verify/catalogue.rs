//! The provider catalogue: the presets shipped in the repository
//! (`host/providers/*.toml`, built into the binary), found by name.

use std::sync::{Arc, OnceLock};

use anyhow::{Result, anyhow};

use super::preset::Preset;

/// The shipped presets' files.
const BUILTIN: &[&str] = &[
    include_str!("../../providers/bitbucket.toml"),
    include_str!("../../providers/calendly.toml"),
    include_str!("../../providers/coinbase-commerce.toml"),
    include_str!("../../providers/dropbox.toml"),
    include_str!("../../providers/github.toml"),
    include_str!("../../providers/gitlab.toml"),
    include_str!("../../providers/mux.toml"),
    include_str!("../../providers/paddle.toml"),
    include_str!("../../providers/shopify.toml"),
    include_str!("../../providers/slack.toml"),
    include_str!("../../providers/typeform.toml"),
    include_str!("../../providers/zoom.toml"),
];

fn builtins() -> &'static [Arc<Preset>] {
    static PARSED: OnceLock<Vec<Arc<Preset>>> = OnceLock::new();
    PARSED.get_or_init(|| {
        BUILTIN
            .iter()
            .map(|text| Arc::new(Preset::parse(text).expect("a shipped preset parses (unit-tested)")))
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

/// Every shipped preset's name, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = builtins().iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_preset_parses_cites_its_docs_and_is_named_once() {
        for text in BUILTIN {
            let preset = Preset::parse(text).unwrap();
            assert!(preset.docs.starts_with("https://"), "{}", preset.name);
        }
        let mut names = names();
        names.dedup();
        assert_eq!(names.len(), BUILTIN.len());
        assert!(builtin("slack").is_ok());
        assert!(builtin("nope").unwrap_err().to_string().contains("github"));
    }
}
