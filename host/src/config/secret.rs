//! Secrets: values that never print, and references to where they live
//! (`env:NAME` or `file:/path`), read when needed.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A secret value that never appears in `Debug` or `Display` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where one key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:/path`.
    pub fn parse(entry: &str) -> Option<Self> {
        match entry.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Some(Self::Env(name.into())),
            Some(("file", path)) if !path.is_empty() => Some(Self::File(path.into())),
            _ => None,
        }
    }

    /// Reads a file reference (trailing newline trimmed); an unreadable or
    /// empty file is an error naming the file, never its content.
    pub fn read_file(path: &Path) -> Result<Secret> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret file {}", path.display()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            bail!("the secret file {} is empty", path.display());
        }
        Ok(Secret::new(text))
    }

    /// The value now: the variable (None when unset or empty) or the file.
    pub fn read(&self) -> Result<Option<Secret>> {
        match self {
            Self::Env(name) => Ok(std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)),
            Self::File(path) => Self::read_file(path).map(Some),
        }
    }
}
