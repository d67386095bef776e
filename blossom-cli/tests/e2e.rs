//! End to end: `blossom mock` runs as a child process, and `blossom text`, `chat`, `image` and
//! `models` run against it as separate processes, as a user would run them. Checks stdout, the
//! saved image, exit codes, and that every failure is one line with a hint and its class's code.
//!
//! Loopback only; each test starts its own mock (killed by a guard, also on panic) and works in
//! its own scratch directory, so the tests run in parallel.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_blossom");

/// Exit codes, as `blossom --help` lists them.
const USAGE: i32 = 2;
const CONFIG: i32 = 3;
const NETWORK: i32 = 4;
const API: i32 = 5;

/// Longest any one `blossom` run may take before the test calls it hung.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// PNG files start with these bytes.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A `blossom` command with none of the user's environment that would change its behaviour.
fn blossom() -> Command {
    let mut command = Command::new(BIN);
    for var in [
        "POLLINATIONS_API_KEY",
        "BLOSSOM_BASE_URL",
        "BLOSSOM_REGIONS",
        "BLOSSOM_PRESET",
        "BLOSSOM_LOG_LEVEL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// A running `blossom mock`, killed when dropped.
struct Mock {
    child: Child,
    urls: Vec<String>,
}

impl Mock {
    /// Starts `blossom mock ARGS` with `regions` regions and reads their URLs.
    fn start(regions: usize, args: &[&str]) -> Mock {
        let child = blossom()
            .args(["mock", "--regions", &regions.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start blossom mock");
        // The guard exists before anything can panic.
        let mut mock = Mock { child, urls: Vec::new() };
        let mut stdout = BufReader::new(mock.child.stdout.take().expect("piped stdout"));
        for index in 0..regions {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("read mock stdout") == 0 {
                let mut stderr = String::new();
                let _ = mock.child.stderr.take().expect("piped stderr").read_to_string(&mut stderr);
                panic!("blossom mock exited before printing region {index}: {stderr}");
            }
            let (name, url) = line.trim().split_once(' ').unwrap_or_else(|| panic!("not `name url`: {line:?}"));
            assert_eq!(name, format!("region-{}", char::from(b'a' + index as u8)));
            assert!(url.starts_with("http://127.0.0.1:"), "{url}");
            mock.urls.push(url.to_string());
        }
        mock
    }

    fn url(&self, index: usize) -> &str {
        &self.urls[index]
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("blossom-e2e-{}-{test}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A config that fails fast: no retries, a short budget.
    fn fast_config(&self) -> String {
        let path = self.path("fast.toml");
        std::fs::write(&path, "[session]\ntimeout = 5\n\n[session.retry]\nmax_retries = 0\n").expect("write config");
        path.to_str().expect("utf-8 temp path").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one `blossom` run did.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    #[track_caller]
    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code(), 0, "{self:?}");
        self
    }

    /// Failed with `code`, saying so in exactly one line with a hint, and printing nothing else.
    #[track_caller]
    fn assert_fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code(), code, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line expected: {:?}", self.stderr);
        let line = self.stderr.trim_end();
        assert!(line.starts_with("blossom: error: ") && line.contains("(hint: "), "{line}");
        assert!(line.contains(needle), "`{needle}` not in: {line}");
        assert_eq!(self.stdout, "", "nothing on stdout: {self:?}");
    }
}

/// Runs `blossom ARGS` with `stdin`, killing it if it outlives [`RUN_LIMIT`].
fn run_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = blossom()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start blossom");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_string(&mut text).expect("read output");
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for blossom") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blossom {args:?} ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    writer.join().expect("stdin writer");
    Run { status, stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") }
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, "")
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

fn file_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn text_image_models_and_chat_succeed_against_the_mock() {
    let mock = Mock::start(1, &[]);
    let scratch = Scratch::new("ok");
    let url = mock.url(0);

    let text = run(&["--base-url", url, "text", "hello there"]);
    text.assert_ok();
    assert_eq!(text.stdout, "Hello from the mock\n");
    assert_eq!(text.stderr, "", "nothing on stderr by default");

    let image_path = scratch.path("fox.png");
    let image = run(&[
        "--base-url",
        url,
        "image",
        "a red fox / at dawn?",
        "-o",
        file_str(&image_path),
        "--width",
        "512",
        "--height",
        "256",
        "--seed",
        "7",
        "--model",
        "flux",
    ]);
    image.assert_ok();
    assert!(image.stdout.starts_with(&format!("saved {}", image_path.display())), "{image:?}");
    let bytes = std::fs::read(&image_path).expect("image saved");
    assert!(bytes.starts_with(PNG_MAGIC), "not a PNG: {bytes:02x?}");

    let models = run(&["--base-url", url, "models"]);
    models.assert_ok();
    assert_eq!(models.stdout.lines().collect::<Vec<_>>(), ["openai", "mistral"]);
    let image_models = run(&["models", "--image", "--base-url", url]);
    image_models.assert_ok();
    assert_eq!(image_models.stdout.lines().collect::<Vec<_>>(), ["flux", "turbo"]);

    // Two messages (the blank line is skipped): two answers, in order.
    let chat = run_with_stdin(&["--base-url", url, "chat", "--system", "be brief"], "hi\n\nand again?\n");
    chat.assert_ok();
    assert_eq!(chat.stdout, "Hello from the mock\nHello from the mock\n");

    // --region, --config and --stats together: the statistics come on stderr at the end.
    let region = format!("mock={url}");
    let config = scratch.fast_config();
    let stats = run(&["--config", &config, "--region", &region, "--stats", "text", "hi"]);
    stats.assert_ok();
    assert_eq!(stats.stdout, "Hello from the mock\n");
    for needle in ["CONNECTION POOL STATISTICS", "Requests succeeded: 1", "Region mock: breaker Closed"] {
        assert!(stats.stderr.contains(needle), "`{needle}` not in:\n{}", stats.stderr);
    }
}

#[test]
fn image_shows_progress_while_it_waits() {
    let mock = Mock::start(1, &["--fail", "0:latency=1200"]);
    let scratch = Scratch::new("progress");
    let out = scratch.path("slow.png");
    let image = run(&["--base-url", mock.url(0), "image", "slow fox", "-o", file_str(&out)]);
    image.assert_ok();
    assert!(image.stderr.contains("generating image... 1s"), "{image:?}");
    assert!(std::fs::read(&out).expect("image saved").starts_with(PNG_MAGIC));
}

#[test]
fn failover_reaches_the_healthy_region() {
    let mock = Mock::start(2, &["--fail", "0:503"]);
    let scratch = Scratch::new("failover");
    let config = scratch.path("failover.toml");
    std::fs::write(&config, "[session.retry]\nmax_retries = 1\n\n[session.retry.backoff]\ninitial = 0.01\n")
        .expect("write config");
    let (a, b) = (format!("a={}", mock.url(0)), format!("b={}", mock.url(1)));
    let text = run(&["--config", file_str(&config), "--region", &a, "--region", &b, "--stats", "text", "hi"]);
    text.assert_ok();
    assert_eq!(text.stdout, "Hello from the mock\n");
    assert!(text.stderr.contains("Requests retried: 1"), "{}", text.stderr);
}

#[test]
fn bad_input_exits_with_the_usage_code() {
    let scratch = Scratch::new("usage");
    // Nothing is sent for bad input, so no server is needed.
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = scratch.path("never.png");
    let out = file_str(&out);

    run(&["--base-url", &url, "text", ""]).assert_fails(USAGE, "prompt is empty");
    run(&["--base-url", &url, "text", "  \t "]).assert_fails(USAGE, "prompt is empty");
    run(&["--base-url", &url, "image", " ", "-o", out]).assert_fails(USAGE, "prompt is empty");
    run(&["--base-url", &url, "image", "fox", "-o", out, "--width", "10"]).assert_fails(USAGE, "`width` must be in");
    run(&["--base-url", &url, "image", "fox", "-o", out, "--height", "5000"]).assert_fails(USAGE, "`height`");
    run(&["--base-url", &url, "image", "fox", "-o", out, "--width", "wide"]).assert_fails(USAGE, "--width");
    run(&["--base-url", &url, "text", "hi", "--model", " "]).assert_fails(USAGE, "`model` is empty");
    run(&["--base-url", &url, "text"]).assert_fails(USAGE, "<PROMPT>");
    run(&["--base-url", &url, "image", "fox", "-o", "/no/such/dir/x.png"]).assert_fails(USAGE, "/no/such/dir");
    run(&["mock", "--regions", "1", "--fail", "3:503"]).assert_fails(USAGE, "region index 3");
    run(&["mock", "--fail", "0:sideways"]).assert_fails(USAGE, "unknown behavior");
    assert!(!Path::new(out).exists(), "no image file for refused input");
}

#[test]
fn unreadable_or_invalid_config_exits_with_the_config_code() {
    let scratch = Scratch::new("config");
    let missing = scratch.path("missing.toml");
    run(&["--config", file_str(&missing), "text", "hi"]).assert_fails(CONFIG, "cannot read");
    let invalid = scratch.path("invalid.toml");
    std::fs::write(&invalid, "[session]\ntimeout = \"soon\"\n").expect("write config");
    run(&["--config", file_str(&invalid), "models"]).assert_fails(CONFIG, "config_file");
    run(&["--region", "no-equals-sign", "models"]).assert_fails(CONFIG, "expected name=url");
    run(&["--base-url", "ftp://127.0.0.1:1", "models"]).assert_fails(CONFIG, "base_url");
}

#[test]
fn server_errors_exit_with_the_api_code() {
    let mock = Mock::start(2, &["--fail", "0:503", "--fail", "1:429=1"]);
    let scratch = Scratch::new("api");
    let config = scratch.fast_config();
    let out = scratch.path("refused.png");
    let failing = mock.url(0);

    run(&["--config", &config, "--base-url", failing, "text", "hi"]).assert_fails(API, "api error 503");
    run(&["--config", &config, "--base-url", failing, "image", "fox", "-o", file_str(&out)])
        .assert_fails(API, "api error 503");
    assert!(!out.exists(), "no image file for a refused request");
    run(&["--config", &config, "--base-url", mock.url(1), "text", "hi"]).assert_fails(API, "api error 429");
}

#[test]
fn unreachable_base_url_exits_with_the_network_code() {
    let scratch = Scratch::new("network");
    let config = scratch.fast_config();
    let url = format!("http://127.0.0.1:{}", closed_port());
    run(&["--config", &config, "--base-url", &url, "text", "hi"]).assert_fails(NETWORK, "could not connect");
    run(&["--config", &config, "--base-url", &url, "models"]).assert_fails(NETWORK, "could not connect");
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let mock = Mock::start(1, &[]);
    let scratch = Scratch::new("full");
    let out = scratch.path("fox.png");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let run = blossom()
        .args(["--base-url", mock.url(0), "image", "fox", "-o", file_str(&out)])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("run blossom");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_stderr_that_cannot_be_written_loses_the_message_not_the_exit_code() {
    let scratch = Scratch::new("full-stderr");
    let config = scratch.fast_config();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let run = blossom()
        .args(["--config", &config, "--base-url", &url, "--stats", "text", "hi"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(full)
        .status()
        .expect("run blossom");
    assert_eq!(run.code(), Some(NETWORK), "a panic exits with 101");
}

#[test]
fn the_log_level_flag_wins_over_a_bad_variable() {
    let mock = Mock::start(1, &[]);
    let models = |flag: &[&str]| {
        blossom()
            .env("BLOSSOM_LOG_LEVEL", "loud")
            .args(flag)
            .args(["--base-url", mock.url(0), "models"])
            .stdin(Stdio::null())
            .output()
            .expect("run blossom")
    };
    let with_flag = models(&["--log-level", "error"]);
    assert!(with_flag.status.success(), "{}", String::from_utf8_lossy(&with_flag.stderr));
    let without = models(&[]);
    assert!(!without.status.success(), "without the flag the variable is read, and refused");
    assert!(String::from_utf8_lossy(&without.stderr).contains("log_level"));
}
