//! pool-core's contract, checked on its source: no clock, no unseeded randomness, no locks or
//! threads, no runtime dependency.

use std::path::Path;

fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push((path.display().to_string(), std::fs::read_to_string(&path).expect("a source file")));
        }
    }
    assert!(files.len() >= 10, "found the modules");
    files
}

#[test]
fn source_reads_no_clock_and_takes_no_lock() {
    let forbidden = [
        "Instant::now",
        "SystemTime::now",
        "thread_rng",
        "rand::rng()",
        "fastrand::u",
        "fastrand::f64",
        "Rng::new()",
        "std::sync::Mutex",
        "RwLock",
        "std::thread",
        "tokio",
        "std::net",
        "std::fs",
    ];
    for (file, text) in sources() {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for pattern in forbidden {
                assert!(!code.contains(pattern), "{file}:{}: `{pattern}` breaks pool-core's contract: {line}", n + 1);
            }
        }
    }
}

#[test]
fn depends_on_no_runtime() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for runtime in ["tokio", "hyper", "async-std", "smol", "futures", "mio", "reqwest"] {
        assert!(!dependencies.contains(runtime), "pool-core must not depend on {runtime}");
    }
}
