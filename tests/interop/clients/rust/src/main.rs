//! Conformance scenarios (protocol/clients.md §9) driving the Rust `faktory` crate (0.13.1)
//! against a Faktory server, normally a fresh faktory_py started by tests/interop/test_client_rust.py.
//!
//! Usage: `conformance <scenario>` with FAKTORY_URL=tcp://127.0.0.1:<port> in the environment
//! (S0 also reads FAKTORY_PASSWORD_URL, a second server that has a password).
//! `conformance --list` prints the scenario names. Exit code 0 means the scenario passed; on
//! failure the binary prints `FAIL <scenario>: <what went wrong>` and exits 1.
//!
//! Everything goes through the crate's public API (Client, Worker, WorkerBuilder, mutate::*),
//! so the crate's own framing, HELLO, reply-type checks and strict INFO decoding are what is
//! being exercised. The only raw socket (`Raw`) does what the crate cannot: send a BEAT with
//! `current_state` for another process's wid, and look at bytes on the wire (END, bad HELLO).
//!
//! The crate cannot FETCH on its own: `Client::fetch` is private, so jobs are fetched with
//! `Worker::run_one`, whose handler hands the decoded `Job` back over a channel (`Fetcher`).
//!
//! S7 (batches) is in batches.rs; S8 (unique jobs) and S9 (tracking, expiring jobs) are in
//! ent_jobs.rs: Enterprise scenarios. S11 (INFO with throttles configured) is in throttles.rs,
//! S13 (job dependencies and results) in workflows.rs.
//! The crate is built with the `ent` feature (so every job it builds carries custom
//! {"track":1}, as an Enterprise user's jobs would).

use chrono::{DateTime, Utc};
use faktory::error::{Connect, Protocol};
use faktory::mutate::{Filter, JobSet};
use faktory::{Client, Error, FaktoryState, Job, JobBuilder, JobId, StopReason, Worker, WorkerBuilder, WorkerId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

const SCENARIOS: &[&str] = &["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s7-reopen", "s8", "s9", "s10", "s11", "s13", "s13-desc"];
/// A whole scenario must finish within this (the crate itself has no read timeouts at all).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(100);
/// A FETCH on empty queues blocks up to 2 s on the server; allow some scheduling slack.
const EMPTY_FETCH_MAX: Duration = Duration::from_millis(2600);
/// The server's scheduled/retry poll interval (the real server's 5 s) plus slack.
const POLL: f64 = 5.0;
/// The panic message of S2's deliberately panicking handler (FAILed with exactly this text).
const HANDLER_PANIC: &str = "s2 panic";

type Res<T = ()> = Result<T, String>;

trait Ctx<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: std::fmt::Debug> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e:?}"))
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ensure_eq {
    ($got:expr, $want:expr, $what:expr) => {
        // `match` keeps temporaries in $got alive for the comparison (as assert_eq! does).
        match (&$got, &$want) {
            (got, want) => {
                if got != want {
                    return Err(format!("{}: expected {:?}, got {:?}", $what, want, got));
                }
            }
        }
    };
}

/// Re-evaluate `$cond` (which may `.await?`) every 50 ms until it holds, or fail after `$secs`.
macro_rules! eventually {
    ($secs:expr, $what:expr, $cond:expr) => {{
        let deadline = Instant::now() + Duration::from_secs_f64($secs);
        loop {
            if $cond {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {} s waiting for {}", $secs, $what));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }};
}

// S8 (unique jobs) and S9 (tracking, expiring jobs). Declared after the macros above, which
// it uses.
mod ent_jobs;
// S7 (batches), likewise.
mod batches;
// S11 (INFO with throttles configured), likewise.
mod throttles;
// S13 (job dependencies and results), likewise.
mod workflows;

fn env(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set: run this through tests/interop/test_client_rust.py"))
}

fn url() -> Res<String> {
    env("FAKTORY_URL")
}

async fn client(url: &str) -> Res<Client> {
    Client::connect_to(url).await.ctx("Client::connect_to")
}

/// INFO through the crate: `current_info` decodes the reply strictly into typed structs
/// (RFC3339 `now`, "HH:MM:SS UTC", semver version, u64 counters), so a missing key, a float
/// where an integer belongs or a bad date is an error here.
async fn info(c: &mut Client) -> Res<FaktoryState> {
    c.current_info().await.ctx("INFO (current_info, strict typed decode)")
}

/// `faktory.tasks.<task>.size` (the deprecated block the crate keeps as raw JSON).
fn task_size(state: &FaktoryState, task: &str) -> Res<u64> {
    #[allow(deprecated)]
    let tasks = &state.data.tasks;
    tasks
        .get(task)
        .and_then(|t| t.get("size"))
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("INFO faktory.tasks.{task}.size missing or not an integer in {tasks}"))
}

fn queue_size(state: &FaktoryState, queue: &str) -> Option<u64> {
    state.data.queues.get(queue).copied()
}

async fn sizes(c: &mut Client) -> Res<(u64, u64, u64)> {
    let s = info(c).await?;
    Ok((
        task_size(&s, "Scheduled")?,
        task_size(&s, "Retries")?,
        task_size(&s, "Dead")?,
    ))
}

fn job(kind: &str, queue: &str, args: Vec<Value>) -> Job {
    JobBuilder::new(kind).queue(queue).args(args).build()
}

// ------------------------------------------------------------------------------------------
// Fetching through a Worker

#[derive(Clone, Copy)]
enum Outcome {
    Ack,
    Fail(&'static str),
    Panic(&'static str),
}

/// A worker connection used one FETCH at a time (`run_one`), with handlers that hand every job
/// they see back to the scenario, then ACK it, return an error (FAIL) or panic (FAIL).
struct Fetcher {
    worker: Worker<io::Error>,
    seen: mpsc::UnboundedReceiver<Job>,
}

fn register(
    mut builder: WorkerBuilder<io::Error>,
    kinds: &[(&str, Outcome)],
    tx: &mpsc::UnboundedSender<Job>,
) -> WorkerBuilder<io::Error> {
    for &(kind, outcome) in kinds {
        let tx = tx.clone();
        builder = builder.register_fn(kind, move |job: Job| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(job);
                match outcome {
                    Outcome::Ack => Ok(()),
                    Outcome::Fail(message) => Err(io::Error::other(message)),
                    Outcome::Panic(message) => panic!("{}", message),
                }
            }
        });
    }
    builder
}

impl Fetcher {
    async fn connect(url: &str, kinds: &[(&str, Outcome)]) -> Res<Fetcher> {
        let (tx, seen) = mpsc::unbounded_channel();
        let worker = register(WorkerBuilder::default(), kinds, &tx)
            .connect_to(url)
            .await
            .ctx("WorkerBuilder::connect_to")?;
        Ok(Fetcher { worker, seen })
    }

    /// One FETCH. Ok(true) when a job came back and was ACKed or FAILed by `run_one`.
    async fn once(&mut self, queues: &[&str]) -> Res<bool> {
        self.worker
            .run_one(0, queues)
            .await
            .ctx(&format!("Worker::run_one (FETCH {queues:?})"))
    }

    /// One FETCH that must return a job with a registered handler.
    async fn job(&mut self, queues: &[&str]) -> Res<Job> {
        ensure!(
            self.once(queues).await?,
            "FETCH {queues:?} returned nothing, a job was expected"
        );
        self.seen
            .try_recv()
            .map_err(|_| format!("FETCH {queues:?} returned a job no handler saw"))
    }

    /// One FETCH that must come back empty, within the server's 2 s block (plus slack).
    async fn nothing(&mut self, queues: &[&str]) -> Res {
        let start = Instant::now();
        if self.once(queues).await? {
            let got = self.seen.try_recv().map(|j| format!("{} {:?}", j.kind(), j.args()));
            return Err(format!(
                "FETCH {queues:?} returned a job ({got:?}), nothing was expected"
            ));
        }
        let took = start.elapsed();
        ensure!(
            took <= EMPTY_FETCH_MAX,
            "an empty FETCH {queues:?} took {took:?} (the server blocks at most 2 s)"
        );
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// A raw connection, for what the crate cannot say

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Bulk(Option<String>),
}

struct Raw {
    stream: BufReader<TcpStream>,
}

impl Raw {
    async fn connect(url: &str) -> Res<Raw> {
        let hostport = url.rsplit('@').next().unwrap().trim_start_matches("tcp://").to_string();
        let stream = TcpStream::connect(&hostport).await.ctx("raw connect")?;
        let mut raw = Raw {
            stream: BufReader::new(stream),
        };
        let hi = raw.read().await?;
        ensure!(
            matches!(&hi, Reply::Simple(s) if s.starts_with("HI {")),
            "greeting was {hi:?}"
        );
        Ok(raw)
    }

    /// Connect and identify as a producer (no password).
    async fn producer(url: &str) -> Res<Raw> {
        let mut raw = Raw::connect(url).await?;
        ensure_eq!(
            raw.call(r#"HELLO {"v":2}"#).await?,
            Reply::Simple("OK".into()),
            "raw HELLO"
        );
        Ok(raw)
    }

    async fn send(&mut self, line: &str) -> Res {
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .ctx("raw write")
    }

    async fn read(&mut self) -> Res<Reply> {
        let mut line = String::new();
        let n = timeout(Duration::from_secs(5), self.stream.read_line(&mut line))
            .await
            .ctx("raw read timed out")?
            .ctx("raw read")?;
        ensure!(n > 0, "the server closed the connection instead of replying");
        let body = line
            .strip_suffix("\r\n")
            .ok_or_else(|| format!("reply line does not end in CRLF: {line:?}"))?;
        let (kind, rest) = body.split_at(1);
        match kind {
            "+" => Ok(Reply::Simple(rest.into())),
            "-" => Ok(Reply::Error(rest.into())),
            "$" => {
                let len: i64 = rest.parse().ctx("bulk length")?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut buf = vec![0u8; len as usize + 2];
                self.stream.read_exact(&mut buf).await.ctx("raw bulk read")?;
                ensure!(buf.ends_with(b"\r\n"), "bulk payload does not end in CRLF");
                buf.truncate(len as usize);
                Ok(Reply::Bulk(Some(String::from_utf8(buf).ctx("bulk utf-8")?)))
            }
            _ => Err(format!("unexpected reply line {line:?}")),
        }
    }

    async fn call(&mut self, line: &str) -> Res<Reply> {
        self.send(line).await?;
        self.read().await
    }

    /// True when the server closes the connection (EOF) within `secs` without sending anything.
    async fn closes_silently(&mut self, secs: u64) -> Res<bool> {
        let mut buf = [0u8; 64];
        match timeout(Duration::from_secs(secs), self.stream.read(&mut buf)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Ok(true),
            Ok(Ok(n)) => Err(format!(
                "expected a close, got bytes {:?}",
                String::from_utf8_lossy(&buf[..n])
            )),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Ok(Err(e)) => Err(format!("raw read: {e:?}")),
        }
    }
}

// ------------------------------------------------------------------------------------------
// S0: handshake

async fn s0() -> Res {
    let url = url()?;
    let pw_url = env("FAKTORY_PASSWORD_URL")?;
    let (head, hostport) = pw_url.rsplit_once('@').ok_or("FAKTORY_PASSWORD_URL has no password")?;
    ensure!(
        head.starts_with("tcp://:"),
        "FAKTORY_PASSWORD_URL must look like tcp://:<password>@host:port"
    );

    // Plain server: producer (HELLO {"v":2} only) and worker (hostname, wid, pid, labels).
    let mut c = client(&url).await?;
    let state = info(&mut c).await?;
    ensure_eq!(
        task_size(&state, "Workers")?,
        0,
        "Workers.size with only a producer connected"
    );
    let wid = WorkerId::new("rusts0worker");
    let worker = WorkerBuilder::<io::Error>::default()
        .wid(wid.clone())
        .hostname("rust-conformance".into())
        .labels(["rust".to_string(), "s0".to_string()])
        .connect_to(&url)
        .await
        .ctx("worker HELLO on the plain server")?;
    // A HELLO with a wid registers the worker process straight away, before any BEAT.
    ensure_eq!(
        task_size(&info(&mut c).await?, "Workers")?,
        1,
        "Workers.size after a worker HELLO"
    );
    drop(worker);
    // The crate's default address logic: FAKTORY_PROVIDER names the variable to read.
    std::env::set_var("FAKTORY_PROVIDER", "FAKTORY_URL");
    let mut via_env = Client::connect()
        .await
        .ctx("Client::connect via FAKTORY_PROVIDER/FAKTORY_URL")?;
    info(&mut via_env).await?;
    // A password in the URL is simply not used when the HI carries no salt.
    let mut extra = client(&format!("tcp://:unused@{}", url.trim_start_matches("tcp://"))).await?;
    info(&mut extra).await?;

    // Password server: the crate hashes i rounds of SHA-256 over password+salt.
    let mut pc = Client::connect_to(&pw_url)
        .await
        .ctx("producer HELLO with the right password")?;
    let state = info(&mut pc).await?;
    ensure!(
        state.server.connections >= 1,
        "connections {}",
        state.server.connections
    );
    let pw_worker = WorkerBuilder::<io::Error>::default()
        .connect_to(&pw_url)
        .await
        .ctx("worker HELLO with the right password")?;
    ensure_eq!(
        task_size(&info(&mut pc).await?, "Workers")?,
        1,
        "Workers.size on the password server"
    );
    drop(pw_worker);

    // A wrong password is rejected by the server with the exact text `ERR Invalid password`.
    let wrong = format!("tcp://:wrong-password@{hostport}");
    match Client::connect_to(&wrong).await {
        Err(Error::Protocol(Protocol::Internal { msg })) => {
            ensure_eq!(msg, "Invalid password", "producer wrong-password error")
        }
        Err(e) => {
            return Err(format!(
                "wrong password: expected Protocol::Internal(Invalid password), got {e:?}"
            ))
        }
        Ok(_) => return Err("a wrong password was accepted (producer)".into()),
    }
    match WorkerBuilder::<io::Error>::default().connect_to(&wrong).await {
        Err(Error::Protocol(Protocol::Internal { msg })) => {
            ensure_eq!(msg, "Invalid password", "worker wrong-password error")
        }
        Err(e) => return Err(format!("wrong password (worker): got {e:?}")),
        Ok(_) => return Err("a wrong password was accepted (worker)".into()),
    }
    // No password at all: the HI has a salt, so the crate refuses locally.
    match Client::connect_to(&format!("tcp://{hostport}")).await {
        Err(Error::Connect(Connect::AuthenticationNeeded)) => {}
        Err(e) => {
            return Err(format!(
                "no password: expected Connect::AuthenticationNeeded, got {e:?}"
            ))
        }
        Ok(_) => return Err("connected to a password server without a password".into()),
    }
    // On the wire: the error, then the server closes the connection.
    let mut raw = Raw::connect(&pw_url).await?;
    let reply = raw.call(r#"HELLO {"v":2,"pwdhash":"0000"}"#).await?;
    ensure_eq!(
        reply,
        Reply::Error("ERR Invalid password".into()),
        "raw HELLO with a bad pwdhash"
    );
    ensure!(
        raw.closes_silently(3).await?,
        "the server kept the connection open after a bad password"
    );
    // The password server still works for the good client.
    info(&mut pc).await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S1: push, fetch, ack, FIFO, queue priority, INFO

async fn s1() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let before = info(&mut c).await?;
    let processed0 = before.data.total_processed;

    let mut a1 = JobBuilder::new("S1Job");
    a1.queue("s1")
        .args(vec![json!("a1"), json!(1), json!({"k": [1, 2.5, null]})]);
    a1.add_to_custom_data("mine", json!({"nested": ["x", 2]}));
    let a1 = a1.build();
    let a2 = job("S1Job", "s1", vec![json!("a2")]);
    let (a1_jid, a1_created) = (a1.id().clone(), a1.created_at);
    c.enqueue(a1.clone()).await.ctx("PUSH a1")?;
    c.enqueue(a2.clone()).await.ctx("PUSH a2")?;

    let state = info(&mut c).await?;
    ensure_eq!(queue_size(&state, "s1"), Some(2), "INFO queues.s1 after two PUSHes");
    ensure!(
        state.data.total_enqueued >= 2,
        "total_enqueued {}",
        state.data.total_enqueued
    );
    ensure!(state.data.total_queues >= 1, "total_queues {}", state.data.total_queues);

    let mut f = Fetcher::connect(&url, &[("S1Job", Outcome::Ack)]).await?;
    let got = f.job(&["s1"]).await?;
    ensure_eq!(got.id(), &a1_jid, "first FETCH is the first job pushed (FIFO)");
    ensure_eq!(got.kind(), "S1Job", "jobtype");
    ensure_eq!(got.args(), a1.args(), "args round-trip");
    ensure_eq!(got.queue, "s1", "queue");
    ensure_eq!(
        got.custom,
        a1.custom,
        "custom round-trip (incl. the ent feature's track:1)"
    );
    ensure_eq!(
        got.custom.get("track"),
        Some(&json!(1)),
        "custom.track from the ent feature"
    );
    ensure_eq!(got.retry, Some(25), "retry");
    ensure_eq!(got.reserve_for, Some(Duration::from_secs(600)), "reserve_for");
    ensure!(got.at.is_none(), "an immediate job has no `at`: {:?}", got.at);
    ensure!(got.failure().is_none(), "a fresh job has no failure");
    let (created, sent) = (got.created_at.ok_or("created_at missing")?, a1_created.unwrap());
    ensure!(
        (created - sent).num_milliseconds().abs() < 1000,
        "created_at {created} vs sent {sent}"
    );
    let enqueued = got.enqueued_at.ok_or("enqueued_at missing on a fetched job")?;
    ensure!(
        (enqueued - Utc::now()).num_seconds().abs() < 60,
        "enqueued_at {enqueued} is not now"
    );
    ensure_eq!(
        f.job(&["s1"]).await?.id(),
        a2.id(),
        "second FETCH is the second job (FIFO)"
    );
    f.nothing(&["s1"]).await?;

    // Queue priority: FETCH lists queues in order, the first non-empty one wins.
    let low = job("S1Job", "s1_low", vec![json!("low")]);
    let high = job("S1Job", "s1_high", vec![json!("high")]);
    c.enqueue(low.clone()).await.ctx("PUSH low")?;
    c.enqueue(high.clone()).await.ctx("PUSH high")?;
    ensure_eq!(
        f.job(&["s1_high", "s1_low"]).await?.id(),
        high.id(),
        "FETCH high low: high first"
    );
    ensure_eq!(f.job(&["s1_high", "s1_low"]).await?.id(), low.id(), "then low");

    // INFO, as the crate's own server_state test reads it.
    let state = info(&mut c).await?;
    ensure_eq!(
        state.data.total_processed,
        processed0 + 4,
        "total_processed after 4 ACKs"
    );
    ensure_eq!(
        queue_size(&state, "s1"),
        Some(0),
        "a drained queue stays listed with size 0"
    );
    ensure_eq!(
        state.server.description,
        "Faktory Enterprise",
        "server.description (Enterprise features are built in)"
    );
    let v = &state.server.version;
    ensure!(
        v.major == 1 && v.minor >= 8,
        "faktory_version {v} (the crate's test wants 1.x, x >= 8)"
    );
    ensure!(
        state.server.uptime.as_secs() > 0,
        "uptime {:?} must be > 0",
        state.server.uptime
    );
    ensure!(
        state.server.connections >= 2,
        "connections {} (a producer and a worker are open)",
        state.server.connections
    );
    ensure!(
        state.server.command_count > 0,
        "command_count {}",
        state.server.command_count
    );
    ensure!(
        (state.now - Utc::now()).num_seconds().abs() < 60,
        "INFO now {} is not now",
        state.now
    );
    let clock = Utc::now().time();
    let skew = (clock - state.server_utc_time).num_seconds().abs();
    ensure!(
        !(60..=86_340).contains(&skew), // allow for midnight wrapping
        "server_utc_time {} vs {}",
        state.server_utc_time,
        clock
    );
    for task in ["Busy", "Scheduled", "Retries", "Dead"] {
        ensure_eq!(task_size(&state, task)?, 0, format!("tasks.{task}.size"));
    }
    ensure_eq!(task_size(&state, "Workers")?, 1, "tasks.Workers.size (one worker wid)");

    c.queue_remove(&["s1"]).await.ctx("QUEUE REMOVE s1")?;
    let state = info(&mut c).await?;
    ensure!(
        queue_size(&state, "s1").is_none(),
        "s1 still listed after QUEUE REMOVE: {:?}",
        state.data.queues
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S2: FAIL -> retry set -> MUTATE requeue -> failure block

fn check_failure(job: &Job, message: &str, retry: usize) -> Res {
    let failure = job
        .failure()
        .ok_or_else(|| format!("requeued job {} has no failure block", job.id().as_str()))?;
    ensure_eq!(failure.retry_count, 0, "failure.retry_count after one FAIL");
    ensure_eq!(failure.retry_remaining, retry, "failure.remaining after one FAIL");
    ensure_eq!(failure.message.as_deref(), Some(message), "failure.message");
    ensure!(
        failure.backtrace.is_none(),
        "failure.backtrace must be absent when none was sent: {:?}",
        failure.backtrace
    );
    ensure!(
        (failure.failed_at - Utc::now()).num_seconds().abs() < 60,
        "failed_at {}",
        failure.failed_at
    );
    let next_at = failure.next_at.ok_or("failure.next_at missing")?;
    ensure!(
        next_at >= failure.failed_at,
        "next_at {next_at} before failed_at {}",
        failure.failed_at
    );
    // errtype is not public on Failure; its serialisation shows it.
    let raw = serde_json::to_value(failure).ctx("serialise failure")?;
    ensure_eq!(
        raw.get("errtype"),
        Some(&json!("unknown")),
        "failure.errtype (the crate always sends unknown)"
    );
    Ok(())
}

async fn s2() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let mut failing = Fetcher::connect(
        &url,
        &[
            ("S2Fail", Outcome::Fail("s2 boom")),
            ("S2Panic", Outcome::Panic(HANDLER_PANIC)),
        ],
    )
    .await?;
    let mut ok = Fetcher::connect(
        &url,
        &[
            ("S2Fail", Outcome::Ack),
            ("S2Panic", Outcome::Ack),
            ("S2NoHandler", Outcome::Ack),
        ],
    )
    .await?;

    // A handler error becomes FAIL {"errtype":"unknown","message":"s2 boom"} (no backtrace).
    let mut j = JobBuilder::new("S2Fail");
    j.queue("s2").args(vec![json!("fail me")]).retry(3isize);
    let j = j.build();
    c.enqueue(j.clone()).await.ctx("PUSH")?;
    failing.job(&["s2"]).await?;
    let state = info(&mut c).await?;
    ensure_eq!(
        task_size(&state, "Retries")?,
        1,
        "tasks.Retries.size straight after FAIL"
    );
    ensure_eq!(state.data.total_failures, 1, "total_failures");
    ensure_eq!(queue_size(&state, "s2"), Some(0), "queues.s2 after the FAIL");
    // The retry is at least 15 s away: a 2 s FETCH must not see it.
    ok.nothing(&["s2"]).await?;

    c.requeue_by_ids(JobSet::Retries, &[j.id()])
        .await
        .ctx("MUTATE requeue retries by jid")?;
    let state = info(&mut c).await?;
    ensure_eq!(task_size(&state, "Retries")?, 0, "Retries.size after requeue");
    ensure_eq!(queue_size(&state, "s2"), Some(1), "queues.s2 after requeue");
    let again = ok.job(&["s2"]).await?;
    ensure_eq!(again.id(), j.id(), "the requeued job");
    ensure_eq!(again.retry, Some(3), "retry kept");
    check_failure(&again, "s2 boom", 3)?;

    // A panicking handler: FAIL with the panic string. A job without a handler: FAIL with
    // "No handler for <jobtype>". Requeue them by jobtype and by pattern.
    let p = job("S2Panic", "s2", vec![json!("panic")]);
    let n = job("S2NoHandler", "s2", vec![json!("nohandler")]);
    c.enqueue(p.clone()).await.ctx("PUSH panic job")?;
    c.enqueue(n.clone()).await.ctx("PUSH no-handler job")?;
    failing.job(&["s2"]).await?;
    ensure!(
        failing.once(&["s2"]).await?,
        "FETCH of the job without a handler returned nothing"
    );
    ensure_eq!(
        sizes(&mut c).await?,
        (0, 2, 0),
        "(Scheduled, Retries, Dead) after two more FAILs"
    );
    c.requeue(JobSet::Retries, Filter::from_kind("S2Panic"))
        .await
        .ctx("MUTATE requeue retries by jobtype")?;
    ensure_eq!(sizes(&mut c).await?.1, 1, "Retries.size after requeue by jobtype");
    let got = ok.job(&["s2"]).await?;
    ensure_eq!(got.id(), p.id(), "requeue by jobtype brought back the panic job");
    check_failure(&got, HANDLER_PANIC, 25)?;
    c.requeue(JobSet::Retries, Filter::from_pattern(r#"*"args":\["nohandler"\]*"#))
        .await
        .ctx("MUTATE requeue retries by regexp")?;
    let got = ok.job(&["s2"]).await?;
    ensure_eq!(got.id(), n.id(), "requeue by pattern brought back the no-handler job");
    check_failure(&got, "No handler for S2NoHandler", 25)?;

    // discard by jobtype; kill by jid then requeue everything from dead (empty filter).
    let d = job("S2Fail", "s2", vec![json!("discard me")]);
    c.enqueue(d.clone()).await.ctx("PUSH")?;
    failing.job(&["s2"]).await?;
    ensure_eq!(sizes(&mut c).await?, (0, 1, 0), "after FAIL");
    c.discard(JobSet::Retries, Filter::from_kind("S2Fail"))
        .await
        .ctx("MUTATE discard retries by jobtype")?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 0), "after discard");
    let k = job("S2Fail", "s2", vec![json!("kill me")]);
    c.enqueue(k.clone()).await.ctx("PUSH")?;
    failing.job(&["s2"]).await?;
    c.kill_by_ids(JobSet::Retries, &[k.id()])
        .await
        .ctx("MUTATE kill retries by jid")?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 1), "after kill");
    c.requeue(JobSet::Dead, Filter::empty())
        .await
        .ctx("MUTATE requeue dead (no filter)")?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 0), "after requeue from dead");
    let got = ok.job(&["s2"]).await?;
    ensure_eq!(got.id(), k.id(), "the job requeued from dead");
    ensure!(got.failure().is_some(), "a job requeued from dead keeps its failure");

    // retry 0: a FAIL drops the job entirely.
    let mut z = JobBuilder::new("S2Fail");
    z.queue("s2").retry(0isize);
    c.enqueue(z.build()).await.ctx("PUSH retry 0")?;
    failing.job(&["s2"]).await?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 0), "a retry-0 job is dropped on FAIL");
    ensure_eq!(info(&mut c).await?.data.total_failures, 6, "total_failures");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S3: scheduled jobs and MUTATE on the scheduled set

async fn s3() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let mut f = Fetcher::connect(&url, &[("S3Job", Outcome::Ack), ("S3Other", Outcome::Ack)]).await?;
    let scheduled = |kind: &str, arg: &str, at: DateTime<Utc>| {
        let mut b = JobBuilder::new(kind);
        b.queue("s3").args(vec![json!(arg)]).at(at);
        b.build()
    };
    let tomorrow = Utc::now() + chrono::Duration::days(1);

    let far = scheduled("S3Job", "s3-marker-far", tomorrow);
    c.enqueue(far.clone()).await.ctx("PUSH at=tomorrow")?;
    let state = info(&mut c).await?;
    ensure_eq!(
        task_size(&state, "Scheduled")?,
        1,
        "tasks.Scheduled.size after a scheduled PUSH"
    );
    ensure!(
        queue_size(&state, "s3").unwrap_or(0) == 0,
        "a scheduled job is not in its queue yet"
    );
    f.nothing(&["s3"]).await?;
    c.kill(JobSet::Scheduled, Filter::from_pattern("*s3-marker*"))
        .await
        .ctx("MUTATE kill scheduled by regexp")?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 1), "(Scheduled, Retries, Dead) after kill");
    c.requeue(JobSet::Dead, Filter::from_kind("S3Job"))
        .await
        .ctx("MUTATE requeue dead by jobtype")?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 0), "after requeue from dead");
    ensure_eq!(f.job(&["s3"]).await?.id(), far.id(), "the killed-then-requeued job");

    // jobtype + pattern together must both match; an empty filter matches everything.
    c.enqueue(scheduled("S3Job", "marker-1", tomorrow)).await.ctx("PUSH")?;
    c.enqueue(scheduled("S3Other", "marker-1", tomorrow))
        .await
        .ctx("PUSH")?;
    c.enqueue(scheduled("S3Job", "marker-2", tomorrow)).await.ctx("PUSH")?;
    ensure_eq!(sizes(&mut c).await?, (3, 0, 0), "three scheduled");
    c.kill(JobSet::Scheduled, Filter::from_kind_and_pattern("S3Job", "*marker-1*"))
        .await
        .ctx("MUTATE kill scheduled by jobtype+regexp")?;
    ensure_eq!(sizes(&mut c).await?, (2, 0, 1), "jobtype+regexp killed exactly one");
    c.discard(JobSet::Scheduled, Filter::empty())
        .await
        .ctx("MUTATE discard scheduled (no filter)")?;
    ensure_eq!(
        sizes(&mut c).await?,
        (0, 0, 1),
        "discard without a filter empties the set"
    );
    c.clear(JobSet::Dead).await.ctx("MUTATE clear dead")?;
    ensure_eq!(sizes(&mut c).await?, (0, 0, 0), "clear dead");

    // `at` in the past: enqueued immediately.
    let past = scheduled("S3Job", "past", Utc::now() - chrono::Duration::hours(1));
    c.enqueue(past.clone()).await.ctx("PUSH at=past")?;
    let start = Instant::now();
    ensure_eq!(f.job(&["s3"]).await?.id(), past.id(), "a job with `at` in the past");
    ensure!(
        start.elapsed() < Duration::from_millis(1500),
        "a past-`at` job took {:?} to fetch",
        start.elapsed()
    );

    // `at` = now + 2 s: not before `at`, and within `at` + one poll interval.
    let at = Utc::now() + chrono::Duration::seconds(2);
    let soon = scheduled("S3Job", "soon", at);
    c.enqueue(soon.clone()).await.ctx("PUSH at=+2s")?;
    ensure_eq!(sizes(&mut c).await?.0, 1, "Scheduled.size");
    let deadline = Instant::now() + Duration::from_secs_f64(2.0 + POLL + 3.0);
    let got = loop {
        if f.once(&["s3"]).await? {
            break f.seen.try_recv().map_err(|_| "job without handler")?;
        }
        ensure!(
            Instant::now() < deadline,
            "the +2 s job was not fetchable within 2 s + the poll interval"
        );
    };
    ensure_eq!(got.id(), soon.id(), "the +2 s job");
    ensure!(
        Utc::now() >= at - chrono::Duration::milliseconds(100),
        "the job came back before its `at`"
    );
    let returned_at = got.at.ok_or("the scheduled job lost its `at`")?;
    ensure!(
        (returned_at - at).num_milliseconds().abs() < 1000,
        "at {returned_at} vs {at}"
    );
    ensure_eq!(sizes(&mut c).await?, (0, 0, 0), "all sets empty at the end");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S4: PUSHB

async fn s4() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let mut f = Fetcher::connect(&url, &[("S4Job", Outcome::Ack)]).await?;

    ensure_eq!(
        c.enqueue_many(Vec::<Job>::new()).await.ctx("PUSHB []")?,
        (0, None),
        "PUSHB of nothing"
    );
    let good: Vec<Job> = (0..3).map(|i| job("S4Job", "s4", vec![json!(i)])).collect();
    ensure_eq!(
        c.enqueue_many(good.clone()).await.ctx("PUSHB valid")?,
        (3, None),
        "PUSHB of 3 valid jobs"
    );
    ensure_eq!(queue_size(&info(&mut c).await?, "s4"), Some(3), "queues.s4");

    let v1 = job("S4Job", "s4", vec![json!("v1")]);
    let mut short = JobBuilder::new("S4Job");
    short.jid(JobId::new("short")).queue("s4");
    let untyped = job("", "s4", vec![]);
    let mut reserved = JobBuilder::new("S4Job");
    reserved.queue("s4").reserve_for(Duration::from_secs(864_001));
    let reserved = reserved.build();
    let v2 = job("S4Job", "s4", vec![json!("v2")]);
    let batch = vec![v1.clone(), short.build(), untyped.clone(), reserved.clone(), v2.clone()];
    let (enqueued, errors) = c.enqueue_many(batch).await.ctx("PUSHB mixed")?;
    ensure_eq!(enqueued, 2, "jobs enqueued from the mixed PUSHB");
    let errors = errors.ok_or("PUSHB with invalid jobs returned no errors")?;
    let want: HashMap<String, String> = [
        ("short".to_string(), "jobs must have a reasonable jid parameter"),
        (untyped.id().to_string(), "jobs must have a jobtype parameter"),
        (
            reserved.id().to_string(),
            "jobs cannot be reserved for more than one day",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    ensure_eq!(errors, want, "PUSHB error map (keyed by jid)");

    ensure_eq!(
        queue_size(&info(&mut c).await?, "s4"),
        Some(5),
        "queues.s4 after the mixed PUSHB"
    );
    for want in good.iter().chain([&v1, &v2]) {
        ensure_eq!(f.job(&["s4"]).await?.id(), want.id(), "PUSHB jobs come back in order");
    }
    f.nothing(&["s4"]).await?;

    // A single PUSH of an invalid job is an ERR with the same text.
    let mut bad = JobBuilder::new("S4Job");
    bad.jid(JobId::new("tiny"));
    match c.enqueue(bad.build()).await {
        Err(Error::Protocol(Protocol::Internal { msg })) => {
            ensure_eq!(msg, "jobs must have a reasonable jid parameter", "PUSH error")
        }
        other => {
            return Err(format!(
                "PUSH with a short jid: expected Protocol::Internal, got {other:?}"
            ))
        }
    }
    info(&mut c).await?; // the connection is still usable
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S5: queue pause / resume / remove

async fn s5() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let mut f = Fetcher::connect(&url, &[("S5Job", Outcome::Ack)]).await?;
    let a = job("S5Job", "s5a", vec![json!("a")]);
    let b = job("S5Job", "s5b", vec![json!("b")]);
    c.enqueue(a.clone()).await.ctx("PUSH a")?;
    c.enqueue(b.clone()).await.ctx("PUSH b")?;
    for q in ["s5c", "s5c"] {
        c.enqueue(job("S5Job", q, vec![])).await.ctx("PUSH c")?;
    }

    c.queue_pause(&["s5a"]).await.ctx("QUEUE PAUSE s5a")?;
    f.nothing(&["s5a"]).await?;
    ensure_eq!(f.job(&["s5a", "s5b"]).await?.id(), b.id(), "a paused queue is skipped");
    ensure_eq!(
        queue_size(&info(&mut c).await?, "s5a"),
        Some(1),
        "a paused queue keeps its job"
    );
    c.queue_resume(&["s5a"]).await.ctx("QUEUE RESUME s5a")?;
    ensure_eq!(f.job(&["s5a"]).await?.id(), a.id(), "resumed queue");

    // Unknown queues: a no-op OK for all three.
    c.queue_pause(&["nosuchqueue", "other"])
        .await
        .ctx("QUEUE PAUSE unknown")?;
    c.queue_resume(&["nosuchqueue"]).await.ctx("QUEUE RESUME unknown")?;
    c.queue_remove(&["nosuchqueue"]).await.ctx("QUEUE REMOVE unknown")?;

    ensure_eq!(queue_size(&info(&mut c).await?, "s5c"), Some(2), "queues.s5c");
    c.queue_remove(&["s5c"]).await.ctx("QUEUE REMOVE s5c")?;
    let state = info(&mut c).await?;
    ensure!(
        queue_size(&state, "s5c").is_none(),
        "s5c listed after REMOVE: {:?}",
        state.data.queues
    );
    f.nothing(&["s5c"]).await?;

    // Several names at once, then the `*` forms.
    c.enqueue(job("S5Job", "s5a", vec![json!("a2")])).await.ctx("PUSH")?;
    c.enqueue(job("S5Job", "s5b", vec![json!("b2")])).await.ctx("PUSH")?;
    c.queue_pause(&["s5a", "s5b"]).await.ctx("QUEUE PAUSE s5a s5b")?;
    f.nothing(&["s5a", "s5b"]).await?;
    c.queue_resume_all().await.ctx("QUEUE RESUME *")?;
    ensure_eq!(f.job(&["s5a"]).await?.args(), &[json!("a2")], "after RESUME *");
    c.queue_pause_all().await.ctx("QUEUE PAUSE *")?;
    f.nothing(&["s5a", "s5b"]).await?;
    c.queue_resume(&["*"]).await.ctx("QUEUE RESUME * (explicit)")?;
    c.queue_remove_all().await.ctx("QUEUE REMOVE *")?;
    let state = info(&mut c).await?;
    ensure!(
        state.data.queues.is_empty(),
        "queues left after REMOVE *: {:?}",
        state.data.queues
    );
    ensure_eq!(state.data.total_queues, 0, "total_queues after REMOVE *");
    ensure_eq!(state.data.total_enqueued, 0, "total_enqueued after REMOVE *");
    f.nothing(&["s5a", "s5b"]).await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S6: the server tells a running Worker to quiet, then to terminate

/// BEAT for someone else's wid with `current_state`, the way a Web UI action would land.
async fn side_beat(side: &mut Raw, wid: &str, state: &str) -> Res {
    let reply = side
        .call(&format!(r#"BEAT {{"wid":"{wid}","current_state":"{state}"}}"#))
        .await?;
    let want = Reply::Bulk(Some(format!(r#"{{"state":"{state}"}}"#)));
    ensure_eq!(
        reply,
        want,
        format!("BEAT current_state {state} is answered with the bulk state")
    );
    Ok(())
}

async fn s6() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let mut side = Raw::producer(&url).await?;
    let base = info(&mut c).await?.server.connections;

    let done = Arc::new(Mutex::new(Vec::<Value>::new()));
    let (tx, _) = mpsc::unbounded_channel();
    let record = done.clone();
    let wid = WorkerId::new("rusts6quietterminate");
    let mut worker = register(WorkerBuilder::default(), &[("S6Boom", Outcome::Fail("boom"))], &tx)
        .wid(wid.clone())
        .workers(2)
        .register_fn("S6Job", move |job: Job| {
            let record = record.clone();
            async move {
                record.lock().unwrap().extend(job.args().iter().cloned());
                Ok::<(), io::Error>(())
            }
        })
        .connect_to(&url)
        .await
        .ctx("worker connect")?;
    let started = Instant::now();
    let handle = tokio::spawn(async move {
        let result = worker.run(&["s6"]).await;
        drop(worker); // its coordinator connection: END
        result
    });

    // One coordinator connection plus one per worker task, all with the same wid.
    eventually!(
        5.0,
        "the worker's 3 connections",
        info(&mut c).await?.server.connections == base + 3
    );
    ensure_eq!(task_size(&info(&mut c).await?, "Workers")?, 1, "Workers.size: one wid");
    c.enqueue(job("S6Job", "s6", vec![json!("one")]))
        .await
        .ctx("PUSH one")?;
    eventually!(
        5.0,
        "the worker to run job one",
        done.lock().unwrap().contains(&json!("one"))
    );
    eventually!(5.0, "the ACK of job one", info(&mut c).await?.data.total_processed == 1);
    c.enqueue(job("S6Boom", "s6", vec![])).await.ctx("PUSH boom")?;
    eventually!(
        5.0,
        "the FAIL of the failing job",
        task_size(&info(&mut c).await?, "Retries")? == 1
    );

    // quiet: the worker hears it in the reply to its own next BEAT (every 5 s), its worker
    // tasks finish their current FETCH and close; the coordinator keeps beating.
    side_beat(&mut side, &wid, "quiet").await?;
    eventually!(
        5.0 + 2.0 + 3.0,
        "the quiet worker to close its fetching connections",
        info(&mut c).await?.server.connections == base + 1
    );
    ensure!(!handle.is_finished(), "quiet must not stop the worker");
    c.enqueue(job("S6Job", "s6", vec![json!("two")]))
        .await
        .ctx("PUSH two")?;
    sleep(Duration::from_millis(2500)).await; // longer than one blocking FETCH
    ensure!(
        !done.lock().unwrap().contains(&json!("two")),
        "a quiet worker ran a new job"
    );
    let state = info(&mut c).await?;
    ensure_eq!(queue_size(&state, "s6"), Some(1), "job two still waits");
    ensure_eq!(task_size(&state, "Workers")?, 1, "a quiet worker is still registered");

    // terminate: `run` returns with ServerInstruction and nothing left running.
    side_beat(&mut side, &wid, "terminate").await?;
    let stop = timeout(Duration::from_secs(10), handle)
        .await
        .map_err(|_| "Worker::run did not return within 10 s of terminate".to_string())?
        .ctx("worker task")?
        .ctx("Worker::run")?;
    ensure_eq!(stop.reason, StopReason::ServerInstruction, "stop reason");
    ensure_eq!(stop.workers_still_running, 0, "workers still running");
    eventually!(
        3.0,
        "the terminated worker's wid to go",
        task_size(&info(&mut c).await?, "Workers")? == 0
    );
    ensure_eq!(
        info(&mut c).await?.server.connections,
        base,
        "connections after the worker stopped"
    );
    eprintln!("s6: quiet + terminate took {:?}", started.elapsed());

    // terminate while a job is running: the worker FAILs it with "terminated" and returns.
    let (tx2, mut running) = mpsc::unbounded_channel();
    let wid2 = WorkerId::new("rusts6busy");
    let mut busy = WorkerBuilder::<io::Error>::default()
        .wid(wid2.clone())
        .register_fn("S6Slow", move |job: Job| {
            let tx2 = tx2.clone();
            async move {
                let _ = tx2.send(job.id().clone());
                sleep(Duration::from_secs(120)).await;
                Ok(())
            }
        })
        .connect_to(&url)
        .await
        .ctx("busy worker connect")?;
    let handle = tokio::spawn(async move { busy.run(&["s6slow"]).await });
    let slow = job("S6Slow", "s6slow", vec![]);
    c.enqueue(slow.clone()).await.ctx("PUSH slow")?;
    let jid = timeout(Duration::from_secs(5), running.recv())
        .await
        .ctx("the slow job to start")?
        .ok_or("channel")?;
    ensure_eq!(&jid, slow.id(), "the running job");
    ensure_eq!(
        task_size(&info(&mut c).await?, "Busy")?,
        1,
        "Busy.size while the job runs"
    );
    side_beat(&mut side, &wid2, "terminate").await?;
    let stop = timeout(Duration::from_secs(10), handle)
        .await
        .map_err(|_| "busy Worker::run did not return within 10 s of terminate".to_string())?
        .ctx("worker task")?
        .ctx("Worker::run")?;
    ensure_eq!(stop.reason, StopReason::ServerInstruction, "stop reason (busy)");
    ensure_eq!(stop.workers_still_running, 1, "workers still running (busy)");
    let state = info(&mut c).await?;
    ensure_eq!(
        task_size(&state, "Retries")?,
        2,
        "the interrupted job was FAILed into retries"
    );
    ensure_eq!(task_size(&state, "Busy")?, 0, "Busy.size after the FAIL");
    c.requeue_by_ids(JobSet::Retries, &[slow.id()])
        .await
        .ctx("MUTATE requeue")?;
    let mut f = Fetcher::connect(&url, &[("S6Slow", Outcome::Ack)]).await?;
    let got = f.job(&["s6slow"]).await?;
    let failure = got.failure().ok_or("no failure on the interrupted job")?;
    ensure_eq!(
        failure.message.as_deref(),
        Some("terminated"),
        "FAIL message on terminate"
    );

    // BEAT for a wid nobody registered.
    let reply = side.call(r#"BEAT {"wid":"nosuchwid"}"#).await?;
    ensure_eq!(
        reply,
        Reply::Error("ERR unknown worker nosuchwid".into()),
        "BEAT unknown wid"
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S10: connection hygiene

async fn s10() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let base = info(&mut c).await?.server.connections;

    // Dropping a Client writes END; the server closes that connection.
    let mut other = client(&url).await?;
    info(&mut other).await?;
    ensure_eq!(
        info(&mut c).await?.server.connections,
        base + 1,
        "connections with a second client"
    );
    drop(other);
    eventually!(
        3.0,
        "the dropped client's connection to close",
        info(&mut c).await?.server.connections == base
    );

    // END on the wire: no reply, just a close. An abrupt close (no END) is fine too.
    let mut raw = Raw::producer(&url).await?;
    raw.send("END").await?;
    ensure!(raw.closes_silently(3).await?, "END did not close the connection");
    let raw = Raw::producer(&url).await?;
    drop(raw);
    eventually!(
        3.0,
        "the abruptly closed connection to go",
        info(&mut c).await?.server.connections == base
    );

    // 25 worker tasks under one wid, all blocked in FETCH at once, then given 25 jobs.
    let inflight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (counters, wid) = (
        (inflight.clone(), peak.clone(), done.clone()),
        WorkerId::new("rusts10many"),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut worker = WorkerBuilder::<io::Error>::default()
        .wid(wid)
        .workers(25)
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .register_fn("S10Job", move |_job: Job| {
            let (inflight, peak, done) = counters.clone();
            async move {
                let now = inflight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_millis(500)).await;
                inflight.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .connect_to(&url)
        .await
        .ctx("worker connect")?;
    let handle = tokio::spawn(async move {
        let result = worker.run(&["s10"]).await;
        drop(worker);
        result
    });
    eventually!(
        10.0,
        "26 worker connections",
        info(&mut c).await?.server.connections == base + 26
    );
    let mut extra = Fetcher::connect(&url, &[]).await?; // a second wid
    let state = info(&mut c).await?;
    ensure_eq!(task_size(&state, "Workers")?, 2, "Workers.size counts distinct wids");
    sleep(Duration::from_millis(300)).await; // let every task reach its FETCH
    let jobs: Vec<Job> = (0..25).map(|i| job("S10Job", "s10", vec![json!(i)])).collect();
    ensure_eq!(c.enqueue_many(jobs).await.ctx("PUSHB 25")?, (25, None), "PUSHB");
    eventually!(15.0, "25 jobs to finish", done.load(Ordering::SeqCst) == 25);
    eventually!(5.0, "25 ACKs", info(&mut c).await?.data.total_processed == 25);
    let peak = peak.load(Ordering::SeqCst);
    ensure!(
        peak >= 5,
        "at most {peak} jobs ran at once: the blocked FETCHes were not served concurrently"
    );
    extra.nothing(&["s10"]).await?;

    let _ = stop_tx.send(());
    let stop = timeout(Duration::from_secs(10), handle)
        .await
        .map_err(|_| "Worker::run did not return within 10 s of the shutdown signal".to_string())?
        .ctx("worker task")?
        .ctx("Worker::run")?;
    ensure_eq!(stop.reason, StopReason::GracefulShutdown, "stop reason");
    drop(extra);
    eventually!(
        5.0,
        "every worker connection to close",
        info(&mut c).await?.server.connections == base
    );
    ensure_eq!(
        task_size(&info(&mut c).await?, "Workers")?,
        0,
        "Workers.size after all workers left"
    );
    eprintln!("s10: peak concurrency {peak}");
    Ok(())
}

// ------------------------------------------------------------------------------------------

async fn run(scenario: &str) -> Res {
    match scenario {
        "s0" => s0().await,
        "s1" => s1().await,
        "s2" => s2().await,
        "s3" => s3().await,
        "s4" => s4().await,
        "s5" => s5().await,
        "s6" => s6().await,
        "s7" => batches::s7().await,
        "s7-reopen" => batches::s7_reopen().await,
        "s8" => ent_jobs::s8().await,
        "s9" => ent_jobs::s9().await,
        "s10" => s10().await,
        "s11" => throttles::s11().await,
        "s13" => workflows::s13().await,
        "s13-desc" => workflows::s13_desc().await,
        _ => Err(format!("unknown scenario {scenario:?}; known: {}", SCENARIOS.join(" "))),
    }
}

// The crate's Client::drop uses block_in_place, which needs the multi-threaded runtime.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    if scenario == "--list" {
        println!("{}", SCENARIOS.join("\n"));
        return;
    }
    // S2's handler panics on purpose: one line for that instead of a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or(payload.downcast_ref::<&str>().copied());
        if message == Some(HANDLER_PANIC) {
            eprintln!("(a job handler panicked on purpose: {HANDLER_PANIC:?})");
        } else {
            default_hook(info);
        }
    }));
    let started = Instant::now();
    let result = match timeout(SCENARIO_TIMEOUT, run(&scenario)).await {
        Ok(result) => result,
        Err(_) => Err(format!("still running after {SCENARIO_TIMEOUT:?}")),
    };
    match result {
        Ok(()) => println!("PASS {scenario} ({:.1} s)", started.elapsed().as_secs_f64()),
        Err(message) => {
            println!("FAIL {scenario}: {message}");
            std::process::exit(1);
        }
    }
}
