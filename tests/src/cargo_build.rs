//! Building workspace artifacts with cargo from inside the tests, and reading where cargo put them.
//!
//! Paths always come from cargo's own JSON messages (`--message-format=json-render-diagnostics`), so
//! they follow whatever target directory and profile cargo uses; nothing here guesses a target path.
//! [`module_path`](crate::module_path) uses the same machinery for the qsess module, and
//! [`syncd_binary_path`] for the `qsess-syncd` binary.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The cargo package and binary target of the sync daemon.
const SYNCD_PACKAGE: &str = "qsess-syncd";
const SYNCD_BINARY: &str = "qsess-syncd";

/// The outcome of the first call to [`syncd_binary_path`], kept so that a failed build is reported to
/// every caller without running cargo again.
static SYNCD_BINARY_PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// One `compiler-artifact` message of cargo's JSON message stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerArtifact {
    /// The target's name (`qsess-syncd`, `qsess`, ...).
    pub target_name: String,
    /// The target's kinds (`bin`, `lib`, `cdylib`, ...).
    pub target_kinds: Vec<String>,
    /// Every file cargo produced for the target.
    pub filenames: Vec<PathBuf>,
    /// The executable, for a `bin` target (and tests and examples).
    pub executable: Option<PathBuf>,
}

impl CompilerArtifact {
    /// Whether the target is of `kind` (`bin`, `cdylib`, ...).
    pub fn is_kind(&self, kind: &str) -> bool {
        self.target_kinds.iter().any(|known| known == kind)
    }
}

/// What a successful `cargo build` printed.
#[derive(Debug, Clone)]
pub struct CargoBuild {
    /// How the command was run, for messages.
    pub described: String,
    /// Cargo's JSON message stream.
    pub stdout: String,
    /// Cargo's human-readable progress and diagnostics.
    pub stderr: String,
}

impl CargoBuild {
    /// Every `compiler-artifact` message in [`stdout`](Self::stdout).
    pub fn artifacts(&self) -> Vec<CompilerArtifact> {
        compiler_artifacts(&self.stdout)
    }
}

/// The absolute path of the `qsess-syncd` binary, built with
/// `cargo build -p qsess-syncd --bin qsess-syncd --message-format=json-render-diagnostics` in the
/// workspace root once per process and taken from the `executable` cargo reports for it.
///
/// # Panics
///
/// If the build fails (the message includes cargo's stderr) or cargo reports no executable for the
/// binary; every call after a failure panics with the same message.
pub fn syncd_binary_path() -> &'static Path {
    match SYNCD_BINARY_PATH.get_or_init(build_syncd_binary) {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

fn build_syncd_binary() -> Result<PathBuf, String> {
    let build = cargo_build(&["-p", SYNCD_PACKAGE, "--bin", SYNCD_BINARY])?;
    let executables: Vec<PathBuf> = build
        .artifacts()
        .into_iter()
        .filter(|artifact| artifact.is_kind("bin") && artifact.target_name == SYNCD_BINARY)
        .filter_map(|artifact| artifact.executable)
        .collect();
    match executables.as_slice() {
        [executable] if executable.is_file() => Ok(executable.clone()),
        [executable] => Err(format!(
            "cargo reported the {SYNCD_BINARY} binary at {}, but no such file exists\n--- cargo stderr ---\n{}",
            executable.display(),
            build.stderr
        )),
        [] => Err(format!(
            "{} succeeded but reported no executable for the {SYNCD_BINARY} binary\n--- cargo stderr ---\n{}",
            build.described, build.stderr
        )),
        several => Err(format!("{} reported several {SYNCD_BINARY} executables: {several:?}", build.described)),
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the qsess-tests crate lives inside the workspace root")
}

/// Runs `cargo build <arguments> --message-format=json-render-diagnostics` in the workspace root (with
/// `$CARGO`, else `cargo` on `PATH`).
///
/// # Errors
///
/// If cargo cannot be run or the build fails; the message quotes the command and cargo's stderr.
pub fn cargo_build(arguments: &[&str]) -> Result<CargoBuild, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .args(arguments)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    // The Debug form of a Command with a current_dir reads `cd "<dir>" && "cargo" "build" ...`.
    let described = format!("{command:?}");
    let output = command.output().map_err(|e| format!("cannot run {described}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(format!("{described} exited with {}\n--- cargo stderr ---\n{stderr}", output.status));
    }
    Ok(CargoBuild { described, stdout, stderr })
}

/// Every `compiler-artifact` message in cargo's JSON message stream; other lines (other messages,
/// anything that is not JSON) are skipped.
pub fn compiler_artifacts(json_lines: &str) -> Vec<CompilerArtifact> {
    let mut artifacts = Vec::new();
    for line in json_lines.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value.as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).map(str::to_owned).collect()
        };
        artifacts.push(CompilerArtifact {
            target_name: message["target"]["name"].as_str().unwrap_or_default().to_owned(),
            target_kinds: strings(&message["target"]["kind"]),
            filenames: strings(&message["filenames"]).into_iter().map(PathBuf::from).collect(),
            executable: message["executable"].as_str().map(PathBuf::from),
        });
    }
    artifacts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_targets_files_and_executables() {
        let lines = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"thiserror"},"filenames":["/t/debug/deps/libthiserror.rlib"],"executable":null}"#,
            "not json",
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"qsess-syncd"},"filenames":["/t/debug/qsess-syncd"],"executable":"/t/debug/qsess-syncd"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        let artifacts = compiler_artifacts(&lines);
        assert_eq!(artifacts.len(), 2);
        assert_eq!(artifacts[0].executable, None);
        assert!(artifacts[0].is_kind("lib") && !artifacts[0].is_kind("bin"));
        assert_eq!(artifacts[1].target_name, "qsess-syncd");
        assert_eq!(artifacts[1].executable, Some(PathBuf::from("/t/debug/qsess-syncd")));
        assert_eq!(artifacts[1].filenames, [PathBuf::from("/t/debug/qsess-syncd")]);
    }
}
