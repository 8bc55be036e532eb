//! S8 (unique jobs) and S9 (job tracking, expiring jobs): Enterprise scenarios driven through
//! the crate's `ent` API (`JobBuilder::unique_for` / `unique_until_start` / `expires_at` /
//! `expires_in`, `Client::set_progress` / `get_progress`, `Protocol::UniqueConstraintViolation`).
//! faktory_py builds these features in (protocol/spec.md §9); the expectations
//! are those of the crate's own Enterprise test suite (tests/real/enterprise.rs), plus
//! faktory_py's documented choices where Enterprise's behaviour is not pinned (noted inline).

use super::*;
use faktory::ent::{JobState, Progress, ProgressUpdate};

/// A job of `kind` in `queue` with `args`, unique for `secs` seconds.
fn unique(kind: &str, queue: &str, args: Vec<Value>, secs: usize) -> JobBuilder {
    let mut b = JobBuilder::new(kind);
    b.queue(queue).args(args).unique_for(secs);
    b
}

/// How a PUSH ended, in words a scenario can compare.
fn outcome(result: Result<(), Error>) -> String {
    match result {
        Ok(()) => "accepted".into(),
        Err(Error::Protocol(Protocol::UniqueConstraintViolation { msg })) => format!("NOTUNIQUE {msg}"),
        Err(other) => format!("{other:?}"),
    }
}

const NOT_UNIQUE: &str = "NOTUNIQUE Job not unique";

async fn push(c: &mut Client, job: Job) -> String {
    outcome(c.enqueue(job).await)
}

/// A worker whose `kind` handler, while the job is being worked, pushes a duplicate of it
/// (same kind, args and queue, unique for 60 s) from another connection and reports how
/// that PUSH ended.
async fn duplicating_worker(url: &str, kind: &str) -> Res<(Worker<io::Error>, mpsc::UnboundedReceiver<String>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let url_owned = url.to_string();
    let worker = WorkerBuilder::default()
        .register_fn(kind, move |job: Job| {
            let url = url_owned.clone();
            let tx = tx.clone();
            async move {
                let mut c = Client::connect_to(&url)
                    .await
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
                let dup = unique(job.kind(), &job.queue, job.args().to_vec(), 60).build();
                let _ = tx.send(push(&mut c, dup).await);
                Ok::<(), io::Error>(())
            }
        })
        .connect_to(url)
        .await
        .ctx("WorkerBuilder::connect_to")?;
    Ok((worker, rx))
}

async fn run_duplicating(
    worker: &mut Worker<io::Error>,
    rx: &mut mpsc::UnboundedReceiver<String>,
    queue: &str,
) -> Res<String> {
    ensure!(
        worker.run_one(0, &[queue]).await.ctx("Worker::run_one")?,
        "FETCH {queue} returned nothing, a job was expected"
    );
    rx.try_recv()
        .map_err(|_| format!("the handler for {queue} did not report its PUSH"))
}

// ------------------------------------------------------------------------------------------
// S8: unique jobs

pub(crate) async fn s8() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let mut ok = Fetcher::connect(&url, &[("S8Job", Outcome::Ack), ("S8Retry", Outcome::Ack)]).await?;
    let mut failing = Fetcher::connect(&url, &[("S8Retry", Outcome::Fail("s8 boom"))]).await?;

    // A duplicate (same kind, args and queue) is refused; map key order does not matter.
    let args = vec![json!("ISBN-13:9781718501850"), json!({"a": 1, "b": 2})];
    let first = unique("S8Job", "s8", args.clone(), 60).build();
    ensure_eq!(push(&mut c, first.clone()).await, "accepted", "first unique PUSH");
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8", args.clone(), 60).build()).await,
        NOT_UNIQUE,
        "duplicate PUSH"
    );
    let reordered = vec![json!("ISBN-13:9781718501850"), json!({"b": 2, "a": 1})];
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8", reordered, 60).build()).await,
        NOT_UNIQUE,
        "duplicate PUSH with the map's keys in another order"
    );
    // Other args, another queue: accepted. Without unique_for: bypasses the lock.
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8", vec![json!(101)], 60).build()).await,
        "accepted",
        "other args"
    );
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8b", args.clone(), 60).build()).await,
        "accepted",
        "other queue"
    );
    ensure_eq!(
        push(&mut c, job("S8Job", "s8", args.clone())).await,
        "accepted",
        "no unique_for"
    );

    // PUSHB: the duplicate is in the error map, with its code.
    let bulk = unique("S8Job", "s8", vec![json!("bulk")], 60).build();
    let bulk_dup = unique("S8Job", "s8", vec![json!("bulk")], 60).build();
    let (count, errors) = c
        .enqueue_many([bulk, bulk_dup.clone()])
        .await
        .ctx("PUSHB with a duplicate")?;
    ensure_eq!(count, 1, "jobs PUSHB enqueued");
    let expected: HashMap<String, String> = [(bulk_dup.id().to_string(), NOT_UNIQUE.to_string())].into();
    ensure_eq!(errors, Some(expected), "PUSHB error map");
    ensure_eq!(queue_size(&info(&mut c).await?, "s8"), Some(4), "queues.s8");

    // ACK releases the lock (unique_until success, the default).
    ensure_eq!(ok.job(&["s8"]).await?.id(), first.id(), "the first unique job");
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8", args.clone(), 60).build()).await,
        "accepted",
        "PUSH after the holder was ACKed"
    );

    // A job waiting in the retry set keeps its lock; its own retry is not blocked by it.
    let mut r = unique("S8Retry", "s8r", vec![json!("r")], 60);
    r.retry(3isize);
    let r = r.build();
    ensure_eq!(push(&mut c, r.clone()).await, "accepted", "unique job that will fail");
    ensure_eq!(failing.job(&["s8r"]).await?.id(), r.id(), "fetch of the failing job");
    ensure_eq!(sizes(&mut c).await?.1, 1, "Retries.size after FAIL");
    ensure_eq!(
        push(&mut c, unique("S8Retry", "s8r", vec![json!("r")], 60).build()).await,
        NOT_UNIQUE,
        "duplicate of a job in the retry set"
    );
    c.requeue_by_ids(JobSet::Retries, &[r.id()])
        .await
        .ctx("MUTATE requeue retries")?;
    ensure_eq!(ok.job(&["s8r"]).await?.id(), r.id(), "the requeued unique job runs");
    ensure_eq!(
        push(&mut c, unique("S8Retry", "s8r", vec![json!("r")], 60).build()).await,
        "accepted",
        "PUSH after the retried job succeeded"
    );

    // unique_until start: the lock is gone while the job runs. The handler pushes a duplicate
    // (unique_until success) from inside the job: accepted. Running that duplicate, the
    // handler's own duplicate is refused: a success lock is held while the job runs.
    let (mut dw, mut reports) = duplicating_worker(&url, "S8Dup").await?;
    let mut s = unique("S8Dup", "s8s", vec![json!("s")], 60);
    s.unique_until_start();
    ensure_eq!(push(&mut c, s.build()).await, "accepted", "unique_until start job");
    let mut again = unique("S8Dup", "s8s", vec![json!("s")], 60);
    again.unique_until_start();
    ensure_eq!(
        push(&mut c, again.build()).await,
        NOT_UNIQUE,
        "duplicate before the FETCH"
    );
    ensure_eq!(
        run_duplicating(&mut dw, &mut reports, "s8s").await?,
        "accepted",
        "a duplicate pushed while a unique_until=start job runs"
    );
    ensure_eq!(
        run_duplicating(&mut dw, &mut reports, "s8s").await?,
        NOT_UNIQUE,
        "a duplicate pushed while a unique_until=success job runs"
    );

    // The lock expires after unique_for.
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8t", vec![], 1).build()).await,
        "accepted",
        "unique_for 1"
    );
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8t", vec![], 1).build()).await,
        NOT_UNIQUE,
        "within 1 s"
    );
    sleep(Duration::from_millis(1500)).await;
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8t", vec![], 1).build()).await,
        "accepted",
        "after 1.5 s"
    );

    // A scheduled job's lock lasts until `at` + unique_for (here 2 s + 1 s).
    let at = Utc::now() + chrono::Duration::seconds(2);
    let mut later = unique("S8Job", "s8at", vec![], 1);
    later.at(at);
    ensure_eq!(push(&mut c, later.build()).await, "accepted", "scheduled unique job");
    sleep(Duration::from_millis(1500)).await;
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8at", vec![], 1).build()).await,
        NOT_UNIQUE,
        "past unique_for but before `at`"
    );
    let until = at + chrono::Duration::milliseconds(1500);
    sleep((until - Utc::now()).to_std().unwrap_or_default()).await;
    ensure_eq!(
        push(&mut c, unique("S8Job", "s8at", vec![], 1).build()).await,
        "accepted",
        "after `at` + unique_for"
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// S9: tracking and expiring jobs

async fn progress(c: &mut Client, jid: &JobId) -> Res<Progress> {
    c.get_progress(jid)
        .await
        .ctx("TRACK GET")?
        .ok_or_else(|| format!("TRACK GET {jid:?} answered nothing"))
}

fn check(p: &Progress, state: JobState, percent: Option<u8>, desc: Option<&str>, what: &str) -> Res {
    ensure_eq!(p.state, state, format!("{what}: state"));
    ensure_eq!(p.percent, percent, format!("{what}: percent"));
    ensure_eq!(p.desc.as_deref(), desc, format!("{what}: desc"));
    ensure!(p.updated_at.is_some(), "{what}: updated_at missing");
    Ok(())
}

pub(crate) async fn s9() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let state = info(&mut c).await?;
    ensure_eq!(
        state.server.description,
        "Faktory Enterprise",
        "INFO server.description"
    );

    // An unknown jid: state unknown, updated_at "" (None here), no percent, no desc.
    let p = progress(&mut c, &JobId::new("s9-no-such-job-000001")).await?;
    ensure_eq!(p.state, JobState::Unknown, "unknown jid");
    ensure!(
        p.updated_at.is_none() && p.percent.is_none() && p.desc.is_none(),
        "unknown jid: {p:?}"
    );
    // A job without custom.track (the `ent` feature adds track:1 to every job) is not tracked.
    let mut plain = job("S9Job", "s9plain", vec![]);
    ensure_eq!(plain.custom.remove("track"), Some(json!(1)), "the crate's track flag");
    c.enqueue(plain.clone()).await.ctx("PUSH untracked")?;
    ensure_eq!(
        progress(&mut c, plain.id()).await?.state,
        JobState::Unknown,
        "untracked job"
    );

    // Tracked: enqueued; TRACK SET on an enqueued job keeps the state.
    let t = job("S9Job", "s9", vec![json!("t")]);
    c.enqueue(t.clone()).await.ctx("PUSH tracked")?;
    check(
        &progress(&mut c, t.id()).await?,
        JobState::Enqueued,
        None,
        None,
        "after PUSH",
    )?;
    c.set_progress(
        ProgressUpdate::builder(t.id().clone())
            .desc("queued".to_string())
            .percent(10)
            .build(),
    )
    .await
    .ctx("TRACK SET on an enqueued job")?;
    check(
        &progress(&mut c, t.id()).await?,
        JobState::Enqueued,
        Some(10),
        Some("queued"),
        "after SET",
    )?;

    // While the job runs its handler reports progress (extending the reservation) and reads it.
    let (tx, mut seen) = mpsc::unbounded_channel::<Res<Progress>>();
    let url_owned = url.clone();
    let mut w = WorkerBuilder::default()
        .register_fn("S9Job", move |job: Job| {
            let url = url_owned.clone();
            let tx = tx.clone();
            async move {
                let result = async {
                    let mut c = client(&url).await?;
                    c.set_progress(
                        ProgressUpdate::builder(job.id().clone())
                            .percent(33)
                            .reserve_until(Utc::now() + chrono::Duration::hours(1))
                            .build(),
                    )
                    .await
                    .ctx("TRACK SET from the handler")?;
                    progress(&mut c, job.id()).await
                }
                .await;
                let _ = tx.send(result);
                Ok::<(), io::Error>(())
            }
        })
        .connect_to(&url)
        .await
        .ctx("WorkerBuilder::connect_to")?;
    ensure!(
        w.run_one(0, &["s9"]).await.ctx("run_one")?,
        "the tracked job was not fetched"
    );
    let inside = seen.try_recv().map_err(|_| "the handler did not run".to_string())??;
    check(
        &inside,
        JobState::Working,
        Some(33),
        Some("queued"),
        "inside the handler",
    )?;
    // After the ACK: success, progress kept; SET is still accepted.
    let after = progress(&mut c, t.id()).await?;
    check(&after, JobState::Success, Some(33), Some("queued"), "after ACK")?;
    c.set_progress(after.update_percent(100))
        .await
        .ctx("TRACK SET after success")?;
    check(
        &progress(&mut c, t.id()).await?,
        JobState::Success,
        Some(100),
        Some("queued"),
        "after SET 100",
    )?;

    // FAIL with retries left: failed. FAIL with retry 0 (discarded): dead — faktory_py's
    // choice for "will not run again" (protocol/DEVIATIONS.md).
    let mut failing = Fetcher::connect(&url, &[("S9Fail", Outcome::Fail("s9 boom"))]).await?;
    let mut f1 = JobBuilder::new("S9Fail");
    f1.queue("s9f").retry(3isize);
    let f1 = f1.build();
    let mut f0 = JobBuilder::new("S9Fail");
    f0.queue("s9f").retry(0isize);
    let f0 = f0.build();
    c.enqueue(f1.clone()).await.ctx("PUSH")?;
    c.enqueue(f0.clone()).await.ctx("PUSH")?;
    failing.job(&["s9f"]).await?;
    failing.job(&["s9f"]).await?;
    ensure_eq!(
        progress(&mut c, f1.id()).await?.state,
        JobState::Failed,
        "after a FAIL with retries left"
    );
    ensure_eq!(
        progress(&mut c, f0.id()).await?.state,
        JobState::Dead,
        "after a FAIL with retry 0"
    );

    // Expiring jobs: fetched while fresh; silently skipped once expired (expires_at and
    // expires_in), FETCH going on with the next job.
    let mut f = Fetcher::connect(&url, &[("S9Exp", Outcome::Ack)]).await?;
    let expiring = |builder: &mut JobBuilder| {
        builder.queue("s9e");
        builder.build()
    };
    let fresh = expiring(JobBuilder::new("S9Exp").expires_at(Utc::now() + chrono::Duration::seconds(3)));
    c.enqueue(fresh.clone()).await.ctx("PUSH expiring")?;
    ensure_eq!(f.job(&["s9e"]).await?.id(), fresh.id(), "an unexpired job is delivered");
    let by_at = expiring(JobBuilder::new("S9Exp").expires_at(Utc::now() + chrono::Duration::seconds(1)));
    let by_in = expiring(JobBuilder::new("S9Exp").expires_in(chrono::Duration::seconds(1)));
    let live = expiring(JobBuilder::new("S9Exp").expires_in(chrono::Duration::hours(1)));
    for j in [&by_at, &by_in, &live] {
        c.enqueue(j.clone()).await.ctx("PUSH expiring")?;
    }
    sleep(Duration::from_secs(2)).await;
    ensure_eq!(f.job(&["s9e"]).await?.id(), live.id(), "expired jobs are skipped");
    f.nothing(&["s9e"]).await?;
    ensure_eq!(queue_size(&info(&mut c).await?, "s9e"), Some(0), "queues.s9e");
    // faktory_py counts them in INFO faktory.total_expired (an extra key the crate ignores).
    let mut raw = Raw::producer(&url).await?;
    let body = match raw.call("INFO").await? {
        Reply::Bulk(Some(body)) => body,
        other => return Err(format!("INFO gave {other:?}")),
    };
    let doc: Value = serde_json::from_str(&body).ctx("INFO JSON")?;
    ensure_eq!(doc["faktory"]["total_expired"], json!(2), "INFO faktory.total_expired");
    Ok(())
}
