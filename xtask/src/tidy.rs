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
