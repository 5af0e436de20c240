//! The compile cache: compiled components on disk, keyed by the
//! component's sha256 and the engine's compatibility hash, so a restart
//! (or another instance on the same folder) does not compile again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::manifest::short_version;

/// Where compiled components are kept, and how often it served.
pub struct CompileCache {
    /// The cache folder and this engine's compatibility hash, if caching.
    dir: Option<(PathBuf, String)>,
    compiles: AtomicU64,
    hits: AtomicU64,
}

impl CompileCache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let dir = dir.map(|dir| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            (dir, format!("{:016x}", hasher.finish()))
        });
        Self {
            dir,
            compiles: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// Compiles so far, and loads from the cache.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.compiles.load(Ordering::Relaxed),
            self.hits.load(Ordering::Relaxed),
        )
    }

    /// The component for `bytes` (whose sha256 is `hash`): from the cache
    /// when this engine compiled it before, else compiled now and cached.
    pub fn component(&self, engine: &Engine, name: &str, hash: &str, bytes: &[u8]) -> Result<Component> {
        let cached = self
            .dir
            .as_ref()
            .map(|(dir, engine_hash)| dir.join(format!("{hash}-{engine_hash}.cwasm")));
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the cache folder is the host's own, and its files are
            // written only by `Component::serialize` of an engine whose
            // compatibility hash is in the file name, so they match this one.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        plugin = name,
                        version = short_version(hash),
                        "plugin loaded from the compile cache"
                    );
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(
                        plugin = name,
                        "compile cache entry unusable, compiling again: {e}"
                    );
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let started = Instant::now();
        let component = Component::new(engine, bytes)
            .map_err(|e| anyhow!("plugin {name}: not a valid component: {e}"))?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            plugin = name,
            version = short_version(hash),
            ms = started.elapsed().as_millis() as u64,
            "plugin compiled"
        );
        if let Some(path) = &cached
            && let Err(e) = write(path, &component)
        {
            tracing::warn!(plugin = name, "could not write the compile cache: {e:#}");
        }
        Ok(component)
    }
}

/// Writes a compiled component next to its final name, then renames it, so
/// a reader never sees half a file.
fn write(path: &Path, component: &Component) -> Result<()> {
    let bytes = component.serialize().map_err(|e| anyhow!("serialising: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
