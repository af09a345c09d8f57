//! The real `orki-webhooksd` process: a crash loses no accepted event, neither
//! does a full disk (answered with 503 until there is room again, without a
//! restart), SIGTERM shuts down cleanly, a second instance is refused, and logs
//! hold no secret.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{ADMIN_TOKEN, Daemon, INGEST_KEY, Launch, stderr_path};
use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa};

async fn register(http: &reqwest::Client, base: &str, rx: &Receiver) {
    register_for(http, base, rx, &["message.created"]).await;
}

/// Registers `rx` for `events` on the daemon at `base`.
pub(crate) async fn register_for(
    http: &reqwest::Client,
    base: &str,
    rx: &Receiver,
    events: &[&str],
) {
    let r = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": rx.url, "verify_token": rx.token, "events": events}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

/// The kill tests' daemon arguments: the test CA, and a retry every second,
/// fifty times (the most a schedule has), so that retries go on through the
/// load and after the restart on a slow machine too.
fn kill_test_args(ca: &TestCa) -> Vec<String> {
    let ca_path = ca.pem_path.to_str().expect("utf-8 path").to_owned();
    let schedule = vec!["1s"; 50].join(",");
    vec![
        "--ca-file".into(),
        ca_path,
        "--retry-schedule".into(),
        schedule,
    ]
}

/// The daemon on `dir` with the kill tests' arguments.
pub(crate) async fn start_for_kill_test(ca: &TestCa, dir: &std::path::Path) -> Daemon {
    let args = kill_test_args(ca);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(dir, &args).await
}

/// [`start_for_kill_test`] with a receiver registered, the receiver answering
/// 503 (down), so that nothing is delivered until it is up again.
async fn start_with_endpoint_down(
    ca: &TestCa,
    dir: &std::path::Path,
) -> (Daemon, reqwest::Client, Receiver) {
    let daemon = start_for_kill_test(ca, dir).await;
    let http = reqwest::Client::new();
    let rx = Receiver::start(ca).await;
    register(&http, &daemon.base, &rx).await;
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    (daemon, http, rx)
}

/// Receives until every event id in `accepted` has arrived answered 200;
/// returns the ids that did.
async fn wait_for_ids(rx: &Receiver, accepted: &HashSet<String>) -> HashSet<String> {
    let mut delivered = HashSet::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while !delivered.is_superset(accepted) {
            let got = rx.next(Duration::from_secs(60)).await;
            if got.answered == 200 {
                assert!(got.signature_ok);
                delivered.insert(got.json()["id"].as_str().expect("id").to_owned());
            }
        }
    })
    .await
    .expect("all accepted events delivered after the restart");
    delivered
}

#[tokio::test]
async fn every_accepted_event_is_delivered_after_a_kill() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    // The endpoint is down while events come in.
    let (daemon, http, rx) = start_with_endpoint_down(&ca, dir.path()).await;
    let mut posts = Vec::new();
    for i in 0..40 {
        let http = http.clone();
        let base = daemon.base.clone();
        posts.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v1/events"))
                .bearer_auth(INGEST_KEY)
                .json(&json!({"type": "message.created", "data": {"i": i}}))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.expect("json");
            body["id"].as_str().expect("id").to_owned()
        }));
    }
    let mut accepted = HashSet::new();
    for p in posts {
        accepted.insert(p.await.expect("post task"));
    }
    // Killed without any shutdown, mid-retries.
    daemon.kill().await;

    rx.set_post(PostMode::default());
    let daemon = start_for_kill_test(&ca, dir.path()).await;
    assert_eq!(wait_for_ids(&rx, &accepted).await, accepted);
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success());
}

/// Killed while events are being posted (and their first attempts fail):
/// most events of the last second are then only in the write-ahead log, not
/// yet in the database file. After the restart every event answered 202
/// arrives (an event whose answer the kill cut off may arrive too).
#[tokio::test]
async fn a_kill_under_load_loses_no_accepted_event() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    // Down during the load, so that nothing is delivered before the kill.
    let (daemon, http, rx) = start_with_endpoint_down(&ca, dir.path()).await;

    let accepted = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let enough = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for c in 0..8 {
        let (http, base) = (http.clone(), daemon.base.clone());
        let (accepted, enough) = (accepted.clone(), enough.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let sent = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(INGEST_KEY)
                    .json(&json!({"type": "message.created", "data": {"c": c, "i": i}}))
                    .send()
                    .await;
                // The kill: this request and the client's later ones fail.
                let Ok(r) = sent else { break };
                let Ok(body) = r.json::<Value>().await else {
                    break;
                };
                let id = body["id"].as_str().expect("id").to_owned();
                let mut accepted = accepted.lock().expect("lock");
                accepted.insert(id);
                if accepted.len() == 400 {
                    enough.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), enough.notified())
        .await
        .expect("400 events accepted");
    daemon.kill().await;
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("clients stop once the daemon is gone")
            .expect("client task");
    }
    let accepted = accepted.lock().expect("lock").clone();

    rx.set_post(PostMode::default());
    let daemon = start_for_kill_test(&ca, dir.path()).await;
    wait_for_ids(&rx, &accepted).await;
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success());
}

/// Posts event number `i`, about 2 KB.
async fn post_padded(http: &reqwest::Client, base: &str, i: u32) -> reqwest::Response {
    http.post(format!("{base}/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"type": "message.created", "data": {"i": i, "pad": "x".repeat(2000)}}))
        .send()
        .await
        .expect("send")
}

/// Posts one event with the ingest key and waits for its signed delivery.
async fn post_and_receive(http: &reqwest::Client, base: &str, rx: &Receiver) {
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"type": "message.created", "data": {"hello": "world"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    assert!(rx.next(Duration::from_secs(10)).await.signature_ok);
}

/// Receives until every event numbered in `wanted` has been delivered (into
/// `delivered`), failing on any event numbered in `refused`.
async fn wait_for_events(
    rx: &Receiver,
    refused: &HashSet<u32>,
    delivered: &mut HashSet<u32>,
    wanted: &HashSet<u32>,
) {
    wait_counting(rx, refused, delivered, wanted, &mut HashMap::new()).await;
}

/// [`wait_for_events`], also counting the requests received per delivery id.
async fn wait_counting(
    rx: &Receiver,
    refused: &HashSet<u32>,
    delivered: &mut HashSet<u32>,
    wanted: &HashSet<u32>,
    received: &mut HashMap<String, u32>,
) {
    tokio::time::timeout(Duration::from_secs(120), async {
        while !delivered.is_superset(wanted) {
            let got = rx.next(Duration::from_secs(60)).await;
            *received.entry(got.header("x-orki-delivery")).or_default() += 1;
            let i = got.json()["data"]["i"].as_u64().expect("data.i") as u32;
            assert!(!refused.contains(&i), "refused event {i} was delivered");
            if got.answered == 200 {
                assert!(got.signature_ok);
                delivered.insert(i);
            }
        }
    })
    .await
    .expect("all accepted events delivered");
}

#[tokio::test]
async fn a_full_disk_is_answered_with_503_until_there_is_room_and_loses_no_accepted_event() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.pem_path.to_str().expect("utf-8 path").to_owned();
    let args = ["--ca-file", &ca_path, "--retry-schedule", "300ms"];
    // Files may not grow past 1-2 MiB (512- or 1024-byte blocks, by shell).
    let daemon = Daemon::start_with_file_limit(dir.path(), &args, 2048).await;
    let http = reqwest::Client::new();
    let rx = Receiver::start(&ca).await;
    register(&http, &daemon.base, &rx).await;

    // Events come in until the database cannot grow; then a few more.
    let mut accepted = HashSet::new();
    let mut refused = HashSet::new();
    for i in 0..20_000 {
        let r = post_padded(&http, &daemon.base, i).await;
        match r.status().as_u16() {
            202 => assert!(accepted.insert(i)),
            503 => {
                let body: Value = r.json().await.expect("json");
                assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
                refused.insert(i);
                if refused.len() == 5 {
                    break;
                }
            }
            other => panic!("event {i}: unexpected {other}"),
        }
    }
    assert_eq!(refused.len(), 5, "the database never filled up");
    assert!(!accepted.is_empty());

    // Room again, the process still running: it takes events again by itself.
    let lifted = tokio::process::Command::new("prlimit")
        .arg(format!("--pid={}", daemon.pid()))
        .arg("--fsize=unlimited:")
        .status()
        .await
        .expect("run prlimit");
    assert!(lifted.success());
    let mut next = 100_000;
    let mut retry = tokio::time::interval(Duration::from_millis(100));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            // A client retrying a refused event, as the 503 invites.
            retry.tick().await;
            let r = post_padded(&http, &daemon.base, next).await;
            match r.status().as_u16() {
                202 => break,
                503 => assert!(refused.insert(next)),
                other => panic!("event {next}: unexpected {other}"),
            }
            next += 1;
        }
    })
    .await
    .expect("events accepted again without a restart");
    accepted.insert(next);
    for i in next + 1..next + 21 {
        assert_eq!(post_padded(&http, &daemon.base, i).await.status(), 202);
        accepted.insert(i);
    }

    // Every accepted event arrives, before and after the disk was full, and no
    // refused one; the database opened again also starts again cleanly (a
    // sentinel posted after a restart arrives).
    let mut delivered = HashSet::new();
    let mut received = HashMap::new();
    wait_counting(&rx, &refused, &mut delivered, &accepted, &mut received).await;
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success());
    let daemon = Daemon::start(dir.path(), &args).await;
    let sentinel = 1_000_000;
    assert_eq!(
        post_padded(&http, &daemon.base, sentinel).await.status(),
        202
    );
    wait_for_events(&rx, &refused, &mut delivered, &HashSet::from([sentinel])).await;
    // Every request the endpoint received before the restart has its attempt
    // in the log, also those made while the disk was full (kept in memory
    // until the store could write again).
    let mut logged: HashMap<String, u32> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!("{}/v1/attempts?limit=500{cursor}", daemon.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        for a in page["items"].as_array().expect("items") {
            let id = a["delivery_id"].as_str().expect("delivery_id").to_owned();
            *logged.entry(id).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    for (delivery, n) in &received {
        let in_log = logged.get(delivery).copied().unwrap_or(0);
        assert!(
            in_log >= *n,
            "{delivery}: received {n} times, {in_log} attempts in the log"
        );
    }
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_the_logs_hold_no_secret() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.pem_path.to_str().expect("utf-8 path").to_owned();
    let daemon = Daemon::start(dir.path(), &["--ca-file", &ca_path]).await;
    let http = reqwest::Client::new();
    let rx = Receiver::start(&ca).await;
    register(&http, &daemon.base, &rx).await;
    post_and_receive(&http, &daemon.base, &rx).await;

    // A second instance on the same data directory is refused with a clear message.
    let second = tokio::process::Command::new(crate::support::daemon::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .expect("run a second instance");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another running instance"),
        "{stderr}"
    );

    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    let logs: String = std::fs::read_dir(dir.path().join("logs"))
        .expect("log directory")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).expect("read log"))
        .collect();
    assert!(
        logs.contains("engine started") && logs.contains("attempt recorded"),
        "{logs}"
    );
    // Under a service manager (stderr not a terminal), stderr carries the same
    // lines, all of them written by the clean exit.
    let stderr = std::fs::read_to_string(stderr_path(dir.path())).expect("read stderr");
    // (Sorted: the files of two days, past midnight, are read in no set order.)
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&stderr),
        sorted(&logs),
        "stderr and the log file hold the same lines"
    );
    assert!(stderr.contains("engine stopped"), "{stderr}");
    for secret in [INGEST_KEY, ADMIN_TOKEN, rx.token.as_str()] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

/// Every directory and file under `dir` (itself included), with its mode's
/// permission bits; symbolic links are not followed.
fn modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir).expect("metadata");
    let mut all = vec![(dir.to_owned(), meta.permissions().mode() & 0o7777)];
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).expect("list") {
            all.extend(modes(&entry.expect("entry").path()));
        }
    }
    all
}

/// Asserts that only the owner can read, write or enter anything under
/// `dir`: directories `0700`, files `0600`. Returns the file names seen.
fn assert_owner_only(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    for (path, mode) in modes(dir) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
        if !path.is_dir() {
            files.push(
                path.strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string(),
            );
        }
    }
    files.sort();
    files
}

/// `orki-webhooksd credentials --data-dir DIR` with only `env` of the two
/// credential variables set: its stdout, after checking it succeeded.
async fn credentials(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = tokio::process::Command::new(crate::support::daemon::binary())
        .arg("credentials")
        .arg("--data-dir")
        .arg(dir)
        .env_remove("ORKI_INGEST_KEY")
        .env_remove("ORKI_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run credentials");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The admin token and the ingest key in what `credentials` printed.
fn parse_credentials(printed: &str) -> (String, String, String) {
    let link = printed
        .lines()
        .find_map(|l| l.strip_prefix("Admin UI:   "))
        .expect("the admin UI line");
    let (base, token) = link.split_once("/#token=").expect("a #token= link");
    let key = printed
        .lines()
        .find_map(|l| l.strip_prefix("Ingest key: "))
        .expect("the ingest key line");
    (base.to_owned(), token.to_owned(), key.to_owned())
}

/// What `serve` printed holds no secret, and says where to read them.
async fn assert_no_secret_printed(daemon: &Daemon, dir: &std::path::Path, secrets: &[&str]) {
    // The pointer follows the "listening" line, which is all a start waits
    // for: wait for it too (bounded), then check nothing secret came before.
    let pointer = format!("orki-webhooksd credentials --data-dir {}", dir.display());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let printed = daemon.stdout().join("\n");
        if printed.contains(&pointer) || tokio::time::Instant::now() >= deadline {
            break printed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for secret in secrets {
        assert!(!printed.contains(secret), "a secret was printed: {printed}");
    }
    assert!(printed.contains(&pointer), "{printed}");
}

#[tokio::test]
async fn a_new_data_dir_and_every_file_in_it_are_for_the_owner_only() {
    let ca = TestCa::new("Orki Test CA");
    let tmp = tempfile::tempdir().expect("temp dir");
    // Made by the daemon (the temp dir itself is 0700 already); the process
    // umask is the usual 022, so without the fix all of it would be readable.
    let dir = tmp.path().join("data");
    let ca_path = ca.pem_path.to_str().expect("utf-8 path").to_owned();
    let launch = Launch {
        stderr: tmp.path().join("stderr.txt"),
        env_credentials: true,
        extra: &["--ca-file", &ca_path],
    };
    let daemon = Daemon::launch(&dir, launch).await;
    let http = reqwest::Client::new();
    let rx = Receiver::start(&ca).await;
    register(&http, &daemon.base, &rx).await;
    post_and_receive(&http, &daemon.base, &rx).await;
    let running = assert_owner_only(&dir);
    assert!(
        running.contains(&"orki-webhooks.redb".to_owned())
            && running.contains(&"orki-webhooks.wal".to_owned())
            && running.contains(&"orki-webhooksd.credentials".to_owned())
            && running
                .iter()
                .any(|f| f.starts_with("logs/orki-webhooksd.")),
        "{running:?}"
    );
    assert_no_secret_printed(&daemon, &dir, &[INGEST_KEY, ADMIN_TOKEN]).await;
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success());
    let stopped = assert_owner_only(&dir);
    assert!(
        stopped.iter().any(|f| f.starts_with("logs/")),
        "{stopped:?}"
    );
}

#[tokio::test]
async fn a_data_dir_left_readable_is_tightened_at_start_and_the_log_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let launch = |extra| Launch {
        stderr: tmp.path().join("stderr.txt"),
        env_credentials: true,
        extra,
    };
    let daemon = Daemon::launch(&dir, launch(&[])).await;
    assert!(daemon.terminate(Duration::from_secs(15)).await.success());
    // As an older version left it: the directories 0755, the files 0644.
    let chmod = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let before = modes(&dir);
    for (path, _) in &before {
        chmod(path, if path.is_dir() { 0o755 } else { 0o644 });
    }
    let stray = dir.join("notes.txt");
    std::fs::write(&stray, "a file of the admin's").expect("write");
    chmod(&stray, 0o644);

    let daemon = Daemon::launch(&dir, launch(&[])).await;
    assert_owner_only(&dir);
    assert!(daemon.terminate(Duration::from_secs(15)).await.success());
    let logs: String = std::fs::read_dir(dir.join("logs"))
        .expect("log directory")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read log"))
        .collect();
    let line = logs
        .lines()
        .find(|l| l.contains("tightened permissions"))
        .unwrap_or_else(|| panic!("no line about the tightening: {logs}"));
    for name in [
        "orki-webhooks.redb",
        "orki-webhooks.wal",
        "notes.txt",
        "logs/orki-webhooksd.",
    ] {
        assert!(line.contains(name), "{name} not in {line}");
    }
    assert!(line.contains(&format!("{}", dir.display())), "{line}");
}

#[tokio::test]
async fn without_a_terminal_serve_prints_no_secret_and_credentials_prints_them() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let launch = Launch {
        stderr: tmp.path().join("stderr.txt"),
        // The stored credentials, made on this first start.
        env_credentials: false,
        extra: &[],
    };
    let daemon = Daemon::launch(&dir, launch).await;
    let http = reqwest::Client::new();

    // While it runs (the database is locked): the link to this instance and
    // the credentials it uses, which work.
    let (base, token, key) = parse_credentials(&credentials(&dir, &[]).await);
    assert_eq!(base, daemon.base);
    assert!(
        token.starts_with("at_") && key.starts_with("ik_"),
        "{token} {key}"
    );
    assert_no_secret_printed(&daemon, &dir, &[&token, &key]).await;
    let r = http
        .get(format!("{base}/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&json!({"type": "message.created", "data": {}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);

    // A key regenerated from the settings is what it prints next.
    let r = http
        .patch(format!("{base}/v1/settings"))
        .bearer_auth(&token)
        .json(&json!({"regenerate_ingest_key": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let fresh = r.json::<Value>().await.expect("json")["ingest_key"]
        .as_str()
        .expect("the new key")
        .to_owned();
    assert_ne!(fresh, key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, printed) = parse_credentials(&credentials(&dir, &[]).await);
        if printed == fresh {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still the old key: {printed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(daemon.terminate(Duration::from_secs(15)).await.success());

    // Stopped: read from the database, at the stored port; the environment's
    // overrides win, as they do for `serve`.
    let (base, stored_token, stored_key) = parse_credentials(&credentials(&dir, &[]).await);
    assert_eq!(base, "http://127.0.0.1:8787");
    assert_eq!(
        (stored_token.as_str(), stored_key.as_str()),
        (token.as_str(), fresh.as_str())
    );
    let env = [
        ("ORKI_INGEST_KEY", INGEST_KEY),
        ("ORKI_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let (_, token, key) = parse_credentials(&credentials(&dir, &env).await);
    assert_eq!((token.as_str(), key.as_str()), (ADMIN_TOKEN, INGEST_KEY));

    // No database there: a clear error, and none made.
    let out = tokio::process::Command::new(crate::support::daemon::binary())
        .args(["credentials", "--data-dir"])
        .arg(tmp.path().join("elsewhere"))
        .output()
        .await
        .expect("run credentials");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tmp.path().join("elsewhere").exists());
}

#[tokio::test]
async fn on_a_terminal_serve_prints_the_admin_link_and_the_ingest_key() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let bin = crate::support::daemon::binary();
    // `script` (util-linux) runs it with a terminal as stdout and stderr; the
    // shell's pid is the daemon's after `exec`.
    let cmd = format!(
        "echo PID $$; exec '{}' serve --data-dir '{}' --listen 127.0.0.1:0",
        bin.display(),
        dir.display()
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .env("ORKI_INGEST_KEY", INGEST_KEY)
        .env("ORKI_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn script");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let line = line.trim_end().to_owned();
            let done = line.starts_with("Ingest key:");
            printed.push(line);
            if done {
                return;
            }
        }
        panic!("it stopped before printing the key: {printed:?}");
    })
    .await
    .expect("printed in time");
    let pid: i32 = printed
        .iter()
        .find_map(|l| l.strip_prefix("PID "))
        .and_then(|p| p.parse().ok())
        .expect("the pid line");
    let base = printed
        .iter()
        .find_map(|l| l.split("listening on ").nth(1))
        .expect("the listening line")
        .to_owned();
    let text = printed.join("\n");
    assert!(
        text.contains(&format!("Admin UI:   {base}/#token={ADMIN_TOKEN}"))
            && text.contains(&format!("Ingest key: {INGEST_KEY}")),
        "{text}"
    );
    assert!(!text.contains("orki-webhooksd credentials"), "{text}");
    use nix::sys::signal::{Signal, kill};
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exited in time")
        .expect("wait");
    assert!(status.success(), "clean exit: {status:?}");
}
