//! Locating the qsess module shared library (`libqsess.so`), building it with cargo when needed.

use std::env;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cargo_build::{cargo_build, compiler_artifacts};

/// Environment variable naming a prebuilt module to load instead of building one.
pub const MODULE_PATH_ENV: &str = "QSESS_MODULE_PATH";

/// The cargo package that produces the module.
const MODULE_PACKAGE: &str = "qsess-module";

/// The outcome of the first call to [`module_path`], kept so that a failed build is reported to
/// every caller without running cargo again.
static MODULE_PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The absolute path of the qsess module shared library, ready for `redis-server --loadmodule`.
///
/// Resolved once per process. If `QSESS_MODULE_PATH` is set (and not empty) that file is used.
/// Otherwise this runs `cargo build -p qsess-module --message-format=json-render-diagnostics` in
/// the workspace root (with `$CARGO`, else `cargo` on `PATH`) and takes the `.so` that cargo
/// reports for the package's `cdylib` target, so the path follows whatever target directory and
/// profile cargo uses.
///
/// # Panics
///
/// If `QSESS_MODULE_PATH` names a missing file, or if the build fails (the message includes
/// cargo's stderr), or if cargo reports no `cdylib` artifact. Every call after a failure panics
/// with the same message.
pub fn module_path() -> &'static Path {
    match MODULE_PATH.get_or_init(locate_module) {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

fn locate_module() -> Result<PathBuf, String> {
    match env::var_os(MODULE_PATH_ENV) {
        Some(path) if !path.is_empty() => prebuilt_module(PathBuf::from(path)),
        _ => build_module(),
    }
}

fn prebuilt_module(path: PathBuf) -> Result<PathBuf, String> {
    // redis-server changes into its --dir before loading modules, so the path must be absolute.
    let path = std::path::absolute(&path).map_err(|e| format!("{MODULE_PATH_ENV}={}: {e}", path.display()))?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{MODULE_PATH_ENV}={} does not name an existing file; unset it to build the module \
             with cargo",
            path.display()
        ))
    }
}

fn build_module() -> Result<PathBuf, String> {
    let build = cargo_build(&["-p", MODULE_PACKAGE])?;
    let mut libraries = cdylib_artifacts(&build.stdout);
    match (libraries.pop(), libraries.is_empty()) {
        (Some(library), true) if library.is_file() => Ok(library),
        (Some(library), true) => Err(format!(
            "cargo reported the qsess module at {}, but no such file exists\n\
             --- cargo stderr ---\n{}",
            library.display(),
            build.stderr
        )),
        (None, _) => Err(format!(
            "{} succeeded but reported no cdylib artifact (is `crate-type` still \
             \"cdylib\" in module/Cargo.toml?)\n--- cargo stderr ---\n{}",
            build.described, build.stderr
        )),
        (Some(_), false) => Err(format!(
            "{} reported several cdylib artifacts, expected only libqsess.so: {}",
            build.described, build.stdout
        )),
    }
}

/// The `.so` filenames of every `compiler-artifact` message for a target of kind `cdylib` in
/// cargo's JSON message stream.
fn cdylib_artifacts(json_lines: &str) -> Vec<PathBuf> {
    compiler_artifacts(json_lines)
        .into_iter()
        .filter(|artifact| artifact.is_kind("cdylib"))
        .flat_map(|artifact| artifact.filenames)
        .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_so_of_the_cdylib_artifact() {
        let lines = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"thiserror"},"filenames":["/t/debug/deps/libthiserror.rlib"]}"#,
            "not json",
            r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"],"name":"qsess"},"filenames":["/t/debug/libqsess.so","/t/debug/libqsess.rlib"]}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(cdylib_artifacts(&lines), [PathBuf::from("/t/debug/libqsess.so")]);
    }

    #[test]
    fn no_cdylib_means_no_artifact() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libx.rlib"]}"#;
        assert!(cdylib_artifacts(line).is_empty());
    }
}
