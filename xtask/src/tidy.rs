//! Repository rules.

use crate::root;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_module_docs() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(text.starts_with("//!"), "{} does not start with `//!`", file.display());
    }
}

#[test]
fn internal_dependencies_carry_a_version() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap_or_default();
    for line in manifest.lines().filter(|l| l.contains("path = ")) {
        assert!(line.contains("version = "), "internal dependency without a version: {line}");
    }
}

/// The workspace's `rust-version`, from the root manifest.
fn rust_version() -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap_or_default();
    let line = manifest.lines().find(|l| l.starts_with("rust-version = ")).unwrap_or_default();
    line.trim_start_matches("rust-version = ").trim_matches('"').to_owned()
}

/// The published crates' directories (every member whose manifest does not say `publish = false`).
fn published_crates() -> Vec<std::path::PathBuf> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap_or_default();
    let members = manifest.lines().find(|l| l.starts_with("members = ")).unwrap_or_default();
    members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|m| root().join(m))
        .filter(|dir| {
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            !text.lines().any(|l| l.trim() == "publish = false")
        })
        .collect()
}

#[test]
fn the_msrv_job_builds_with_the_declared_rust_version() {
    let version = rust_version();
    assert!(!version.is_empty(), "no rust-version in the root manifest");
    let workflow = std::fs::read_to_string(root().join(".github/workflows/ci.yml")).unwrap_or_default();
    let toolchain = format!("dtolnay/rust-toolchain@{version}");
    assert!(workflow.contains(&toolchain), "the workflow has no MSRV job on `{toolchain}`");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    assert!(readme.contains(&format!("Rust {version} or newer")), "the README states another MSRV");
}

#[test]
fn published_crates_carry_licenses_and_readmes_that_work_on_crates_io() {
    let crates = published_crates();
    assert!(crates.len() >= 8, "published crates: {crates:?}");
    for dir in crates {
        for file in ["LICENSE-MIT", "LICENSE-APACHE", "README.md"] {
            assert!(dir.join(file).is_file(), "{} has no {file}", dir.display());
        }
        // crates.io renders a crate's README outside the repository: relative links leading out
        // of the crate break there.
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
        assert!(!readme.contains("](../"), "{}/README.md links out of its crate", dir.display());
    }
}
