//! Headless Chromium on a page served from 127.0.0.1 by a tiny HTTP server, for the tests that
//! need a real browser (tests/tint.rs: every shader through Chromium's WGSL compiler; tests/web.rs:
//! the page of web/ running `dlsvm check` and training on WebGPU). The page posts its report to
//! `/result`; without Chromium the test fails with the install hint (`.ci/install-chromium.sh`).
//! `DLSVM_CHROMIUM` names the browser's binary where it is not `chromium` on the PATH.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("DLSVM_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("\n\nChromium is not installed, so nothing can be run in a browser.\n{INSTALL}");
}

const INSTALL: &str = "Install it: `sudo apt-get install chromium` (or `bash .ci/install-chromium.sh`),\n\
                       or set DLSVM_CHROMIUM to a Chromium or Chrome binary.\n\n";

/// The browser, in a process group of its own (it starts a dozen processes), all ended on drop,
/// with its fresh profile folder and its log.
pub struct Browser {
    child: Child,
    log: PathBuf,
}

impl Browser {
    fn start(url: &str, profile: &Path, log_path: &Path) -> Browser {
        use std::os::unix::process::CommandExt;
        let binary = chromium();
        std::fs::create_dir_all(profile).unwrap();
        let log = std::fs::File::create(log_path).unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                // WebGPU is behind a flag on Linux; the adapter is SwiftShader (no GPU needed).
                "--enable-unsafe-webgpu",
                // The machine may have no network: nothing but the page.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(profile);
                let _ = std::fs::remove_file(log_path);
                panic!("\n\ncannot start Chromium ({}): {e}\n{INSTALL}", binary.display())
            });
        Browser { child, log: log_path.to_path_buf() }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        'signals: for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    // The group's other processes may outlive the leader a moment.
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
                    break 'signals;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A browser profile folder, removed when dropped (after the browsers that used it).
struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One HTTP request: (method, path, body).
fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, String, Vec<u8>)> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((method, path, body))
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
}

/// Serves `path` of the page (in `files`: the path without its query, to a content type and the
/// bytes; `None` is a 404) to headless Chromium opened at `url` (a path and query on the server)
/// until the page posts its report to `/result`, which is returned as JSON. Panics with the
/// browser's log if it exits first or `timeout` passes. `name` names the temporary profile.
#[allow(dead_code)] // tests/tint.rs's; tests/web.rs opens pages with run_pages.
pub fn run_page(
    name: &str,
    url: &str,
    files: impl Fn(&str) -> Option<(&'static str, Vec<u8>)>,
    timeout: Duration,
) -> Value {
    run_pages(name, &[url], files, timeout).pop().unwrap()
}

/// [`run_page`] for each of `urls` in turn, as a returning visitor: one origin (the same server)
/// and one browser profile (its storage kept), a browser started and closed for each; `timeout`
/// for each. The reports, in order.
pub fn run_pages(
    name: &str,
    urls: &[&str],
    files: impl Fn(&str) -> Option<(&'static str, Vec<u8>)>,
    timeout: Duration,
) -> Vec<Value> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let profile = Profile(std::env::temp_dir().join(format!("dlsvm-{name}-{}-{stamp}", std::process::id())));
    let log = profile.0.with_extension("log");
    let mut reports = Vec::new();
    for url in urls {
        let url = format!("http://{}{url}", listener.local_addr().unwrap());
        reports.push(serve(&listener, Browser::start(&url, &profile.0, &log), &log, &files, timeout));
    }
    reports
}

/// Serves the page to `browser` until it reports ([`run_page`]).
fn serve(
    listener: &TcpListener,
    mut browser: Browser,
    log: &Path,
    files: &impl Fn(&str) -> Option<(&'static str, Vec<u8>)>,
    timeout: Duration,
) -> Value {
    let log_tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let started = Instant::now();
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let Ok((method, path, body)) = read_request(&mut stream) else { continue };
                let path = path.split('?').next().unwrap_or("").to_string();
                match (method.as_str(), path.as_str()) {
                    ("POST", "/result") => {
                        respond(&mut stream, "200 OK", "text/plain", b"ok");
                        drop(browser);
                        return serde_json::from_slice(&body).expect("the page's report is not JSON");
                    }
                    ("GET", p) => match files(p) {
                        Some((kind, bytes)) => respond(&mut stream, "200 OK", kind, &bytes),
                        None => respond(&mut stream, "404 Not Found", "text/plain", b""),
                    },
                    _ => respond(&mut stream, "404 Not Found", "text/plain", b""),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = browser.child.try_wait() {
                    panic!("Chromium exited ({status}) before the page reported; its log:\n{}", log_tail());
                }
                if started.elapsed() > timeout {
                    panic!("no report from the page after {timeout:?}; Chromium's log:\n{}", log_tail());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}
