//! `zccache.watcher`'s engine: a `notify` watcher (inotify on Linux) on the chosen folders,
//! filtered by globs in Rust, changes queued until Python polls for them. Python is entered
//! only to hand over a debounced batch.

use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes seen and not yet handed over.
#[derive(Default)]
struct Pending {
    /// (kind, absolute path), a path once (its latest kind; a file created then written is
    /// still "created").
    changes: Vec<(&'static str, PathBuf)>,
    last_change: Option<Instant>,
    /// Why the watcher failed, once.
    error: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
    changed: Condvar,
}

/// What a watcher reports.
struct Filter {
    root: PathBuf,
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Filter {
    /// Whether a change of `path` is reported: under the root, matching an include glob (if
    /// any), and neither it nor any directory above it (relative to the root) excluded.
    fn wants(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        let mut above = PathBuf::new();
        for component in rel.components() {
            above.push(component);
            if self.exclude.is_match(&above) || self.exclude.is_match(component.as_os_str()) {
                return false;
            }
        }
        self.include.as_ref().is_none_or(|set| set.is_match(rel))
    }
}

fn glob_set(patterns: &[String]) -> PyResult<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let pattern = pattern.trim_end_matches('/');
        let glob =
            Glob::new(pattern).map_err(|e| crate::error(format!("glob {pattern:?}: {e}")))?;
        builder.add(glob);
    }
    builder.build().map_err(crate::error)
}

#[pyclass(module = "zccache._native")]
pub struct NativeWatcher {
    filter: Arc<Filter>,
    folders: Vec<PathBuf>,
    debounce: Duration,
    shared: Arc<Shared>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

#[pymethods]
impl NativeWatcher {
    #[new]
    #[pyo3(signature = (root, include_folders, include_globs, exclude_globs, debounce_seconds))]
    fn new(
        root: PathBuf,
        include_folders: Vec<PathBuf>,
        include_globs: Vec<String>,
        exclude_globs: Vec<String>,
        debounce_seconds: f64,
    ) -> PyResult<NativeWatcher> {
        let root = std::fs::canonicalize(&root)
            .map_err(|e| crate::error(format!("watching {}: {e}", root.display())))?;
        let folders = if include_folders.is_empty() {
            vec![root.clone()]
        } else {
            include_folders
                .into_iter()
                .map(|folder| root.join(folder))
                .collect()
        };
        let include = (!include_globs.is_empty())
            .then(|| glob_set(&include_globs))
            .transpose()?;
        Ok(NativeWatcher {
            filter: Arc::new(Filter {
                root,
                include,
                exclude: glob_set(&exclude_globs)?,
            }),
            folders,
            debounce: Duration::from_secs_f64(debounce_seconds.max(0.0)),
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::default()),
                changed: Condvar::new(),
            }),
            watcher: Mutex::new(None),
        })
    }

    /// Starts watching (again); changes from before are not reported.
    fn start(&self) -> PyResult<()> {
        let mut slot = self.watcher.lock();
        if slot.is_some() {
            return Ok(());
        }
        let filter = self.filter.clone();
        let shared = self.shared.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let mut pending = shared.pending.lock();
                match event {
                    Ok(event) => {
                        let kind = match event.kind {
                            EventKind::Create(_) => "created",
                            EventKind::Remove(_) => "deleted",
                            EventKind::Modify(ModifyKind::Name(_)) => "moved",
                            EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) => {
                                return
                            }
                            EventKind::Modify(_) | EventKind::Any | EventKind::Other => "modified",
                        };
                        let mut any = false;
                        for path in event.paths.into_iter().filter(|p| filter.wants(p)) {
                            match pending.changes.iter_mut().find(|(_, known)| *known == path) {
                                Some(known) if !(known.0 == "created" && kind == "modified") => {
                                    known.0 = kind;
                                }
                                Some(_) => {}
                                None => pending.changes.push((kind, path)),
                            }
                            any = true;
                        }
                        if any {
                            pending.last_change = Some(Instant::now());
                            shared.changed.notify_all();
                        }
                    }
                    Err(e) => {
                        pending.error.get_or_insert_with(|| e.to_string());
                        shared.changed.notify_all();
                    }
                }
            })
            .map_err(crate::error)?;
        for folder in &self.folders {
            watcher
                .watch(folder, RecursiveMode::Recursive)
                .map_err(|e| crate::error(format!("watching {}: {e}", folder.display())))?;
        }
        let mut pending = self.shared.pending.lock();
        pending.changes.clear();
        pending.last_change = None;
        *slot = Some(watcher);
        Ok(())
    }

    /// Stops watching; changes already seen can still be polled.
    fn stop(&self) {
        self.watcher.lock().take();
        self.shared.changed.notify_all();
    }

    fn is_running(&self) -> bool {
        self.watcher.lock().is_some()
    }

    /// The next batch of changes, as (kind, path) pairs, once none has come for the debounce
    /// interval; `None` when nothing changed within `timeout` seconds (`None`: wait until
    /// something does, or the watcher stops).
    #[pyo3(signature = (timeout=None))]
    fn poll(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Vec<(String, String)>>> {
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        let batch = py.allow_threads(|| {
            let mut pending = self.shared.pending.lock();
            loop {
                if let Some(error) = pending.error.take() {
                    return Err(error);
                }
                if !pending.changes.is_empty() {
                    break;
                }
                if !self.is_running() {
                    return Ok(None);
                }
                match deadline {
                    Some(deadline) => {
                        if Instant::now() >= deadline
                            || self
                                .shared
                                .changed
                                .wait_until(&mut pending, deadline)
                                .timed_out()
                                && pending.changes.is_empty()
                        {
                            return Ok(None);
                        }
                    }
                    // Woken now and then to see whether the watcher was stopped.
                    None => {
                        self.shared
                            .changed
                            .wait_for(&mut pending, Duration::from_millis(200));
                    }
                }
            }
            // A burst is handed over once it has been quiet for the debounce interval.
            while let Some(last) = pending.last_change {
                let quiet_at = last + self.debounce;
                if Instant::now() >= quiet_at {
                    break;
                }
                self.shared.changed.wait_until(&mut pending, quiet_at);
            }
            pending.last_change = None;
            Ok(Some(std::mem::take(&mut pending.changes)))
        });
        let batch = batch.map_err(crate::error)?;
        Ok(batch.map(|changes| {
            changes
                .into_iter()
                .map(|(kind, path)| (kind.to_string(), path.to_string_lossy().into_owned()))
                .collect()
        }))
    }
}
