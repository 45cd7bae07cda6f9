//! The fuzz corpora replayed on stable, as unit tests: every file of `fuzz/corpus/NAME/` and
//! `fuzz/regressions/NAME/` goes through `fuzzing::NAME`, the same function the cargo-fuzz
//! binary calls. A corpus that went missing fails here rather than replaying
//! nothing; a panic names the file. See docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::fuzzing;

/// Regression inputs of bugs not fixed yet, each replayed by its own `#[ignore]`d test
/// instead (`target/file name`).
const KNOWN_BUGS: &[&str] = &[];

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// The input files of a directory, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// How long one input may run before the replay calls it a hang. Inputs take milliseconds;
/// this only turns a hang into a failure that names the file instead of a stuck CI job.
const HANG: Duration = Duration::from_secs(120);

/// Runs one input; `Err` if it panicked (the panic message is printed as it happens).
fn run(target: fn(&[u8]), file: &Path) -> Result<(), ()> {
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    catch_unwind(AssertUnwindSafe(|| target(&data))).map_err(|_| ())
}

/// Replays the corpus (which must not be empty) and the regressions (which may not exist
/// yet), in order on one thread (the targets keep a runtime per thread), watched for hangs.
fn replay(name: &str, target: fn(&[u8])) {
    let corpus = inputs(&dir("corpus", name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name} is missing or empty: the corpus is part of the repository"
    );
    let files: Vec<PathBuf> = corpus
        .iter()
        .chain(&inputs(&dir("regressions", name)))
        .filter(|file| {
            let id = format!("{name}/{}", file.file_name().unwrap().to_string_lossy());
            !KNOWN_BUGS.contains(&id.as_str())
        })
        .cloned()
        .collect();
    assert!(
        files.len() >= corpus.len(),
        "{name}: {} inputs",
        files.len()
    );
    let (done, results) = mpsc::channel();
    let queue = files.clone();
    std::thread::spawn(move || {
        for file in queue {
            let result = run(target, &file);
            if done.send((file, result)).is_err() {
                return;
            }
        }
    });
    for file in &files {
        match results.recv_timeout(HANG) {
            Ok((_, Ok(()))) => {}
            Ok((file, Err(()))) => panic!(
                "fuzz input {} panicked (message above); reproduce with \
                 `cargo test --lib fuzzing::replay::{name}` or \
                 `RUSTC_BOOTSTRAP=1 cargo fuzz run {name} {0}`",
                file.display()
            ),
            Err(_) => panic!(
                "fuzz input {} still running after {HANG:?}: a hang",
                file.display()
            ),
        }
    }
}

#[test]
fn request_head() {
    replay("request_head", fuzzing::request_head);
}

#[test]
fn sniff() {
    replay("sniff", fuzzing::sniff);
}

#[test]
fn hixie_frames() {
    replay("hixie_frames", fuzzing::hixie_frames);
}

#[test]
fn hybi_frames() {
    replay("hybi_frames", fuzzing::hybi_frames);
}

#[test]
fn base64_payload() {
    replay("base64_payload", fuzzing::base64_payload);
}

#[test]
fn token_file() {
    replay("token_file", fuzzing::token_file);
}

#[test]
fn config_file() {
    replay("config_file", fuzzing::config_file);
}

#[test]
fn proxy_header() {
    replay("proxy_header", fuzzing::proxy_header);
}

/// Every target has its test above: a target added to `fuzz/` without one fails here.
#[test]
fn every_target_is_replayed() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut names: Vec<String> = inputs(&targets)
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "base64_payload",
            "config_file",
            "hixie_frames",
            "hybi_frames",
            "proxy_header",
            "request_head",
            "sniff",
            "token_file"
        ]
    );
}
