//! S7 (batches), driven through the crate's `ent` batch API (`Batch::builder`,
//! `Client::start_batch` / `open_batch` / `get_batch_status`, `BatchHandle::add` /
//! `start_batch` / `commit`). The expectations are those of the crate's own Enterprise tests
//! (tests/real/enterprise.rs: numbers and callback states read right after an ACK or a COMMIT,
//! from another connection, without sleeps), rewritten here.
//!
//! `s7` runs against the default (strict) server: faktory_py refuses to reopen a committed
//! batch from outside, but a job of the batch may (here a worker's handler, through a producer
//! connection of its own while its job is being worked). `s7-reopen` is the crate's
//! "reopen from outside, add jobs and a child, push after the callbacks" test: with
//! FAKTORY_BATCH_POLICY=permissive (a server configured `[batches] policy = "permissive"`) all
//! of it must pass; with strict the first reopening from outside must be refused with the
//! clear error.

use super::*;
use faktory::ent::{Batch, BatchId, BatchStatus, CallbackState};

const STRICT_REFUSAL: &str = "is committed: it can only be reopened or added to from within";

async fn status(c: &mut Client, bid: &BatchId) -> Res<BatchStatus> {
    c.get_batch_status(bid)
        .await
        .ctx("BATCH STATUS")?
        .ok_or_else(|| format!("BATCH STATUS {} answered nothing", bid.as_str()))
}

async fn check(
    c: &mut Client,
    bid: &BatchId,
    want: (usize, usize, usize),
    complete: CallbackState,
    success: CallbackState,
    what: &str,
) -> Res {
    let s = status(c, bid).await?;
    ensure_eq!(
        (s.total, s.pending, s.failed),
        want,
        format!("{what}: total, pending, failed")
    );
    ensure_eq!(s.complete_callback_state, complete, format!("{what}: complete_st"));
    ensure_eq!(s.success_callback_state, success, format!("{what}: success_st"));
    Ok(())
}

fn cb(kind: &str, queue: &str) -> Job {
    job(kind, queue, vec![])
}

/// A described batch whose only callback is a success callback `kind` on `queue`.
fn success_batch(description: &str, kind: &str, queue: &str) -> Batch {
    Batch::builder()
        .description(description)
        .with_success_callback(cb(kind, queue))
}

/// Did an error come from the server refusing a committed batch to an outsider?
fn refused_as_outsider(err: &Error, bid: &BatchId) -> bool {
    let text = format!("{err:?}");
    text.contains(&format!("Batch {}", bid.as_str())) && text.contains(STRICT_REFUSAL)
}

pub async fn s7() -> Res {
    let url = url()?;
    let mut p = client(&url).await?;
    let mut t = client(&url).await?;

    // --- the lifecycle, read synchronously from another connection -------------------------
    let mut w = Fetcher::connect(&url, &[("S7Job", Outcome::Ack), ("S7Done", Outcome::Ack)]).await?;
    let mut preset = JobBuilder::new("S7Job");
    preset
        .queue("s7")
        .args(vec![json!(3)])
        .add_to_custom_data("bid", "check-check");
    let before = Utc::now();
    let mut b = p
        .start_batch(
            Batch::builder()
                .description("S7 lifecycle")
                .with_complete_callback(cb("S7Done", "s7cb")),
        )
        .await
        .ctx("BATCH NEW")?;
    let bid = b.id().clone();
    ensure!(bid.starts_with("b-"), "bid {:?} does not start with b-", bid.as_str());
    ensure!(
        b.add(job("S7Job", "s7", vec![json!(1)])).await.ctx("add")?.is_none(),
        "add 1 replaced a bid"
    );
    ensure!(
        b.add(job("S7Job", "s7", vec![json!(2)])).await.ctx("add")?.is_none(),
        "add 2 replaced a bid"
    );
    ensure_eq!(
        b.add(preset.build()).await.ctx("add")?,
        Some(json!("check-check")),
        "add returns the bid it replaced"
    );
    b.commit().await.ctx("BATCH COMMIT")?;
    let s = status(&mut t, &bid).await?;
    ensure!(
        s.created_at >= before - chrono::Duration::seconds(1) && s.created_at <= Utc::now(),
        "created_at {}",
        s.created_at
    );
    ensure_eq!(s.description.as_deref(), Some("S7 lifecycle"), "description");
    ensure_eq!(s.parent_bid, None, "parent_bid of a top-level batch");
    check(
        &mut t,
        &bid,
        (3, 3, 0),
        CallbackState::Pending,
        CallbackState::Pending,
        "committed",
    )
    .await?;
    for pending in [2, 1, 0] {
        ensure_eq!(w.job(&["s7"]).await?.kind(), "S7Job", "member");
        let complete = if pending == 0 {
            CallbackState::Enqueued
        } else {
            CallbackState::Pending
        };
        check(
            &mut t,
            &bid,
            (3, pending, 0),
            complete,
            CallbackState::Pending,
            "after an ACK",
        )
        .await?;
    }
    let done = w.job(&["s7cb"]).await?;
    ensure_eq!(done.kind(), "S7Done", "the complete callback");
    ensure!(
        !done.custom.contains_key("bid"),
        "the callback carries custom.bid: {:?}",
        done.custom
    );
    ensure_eq!(
        done.custom.get("_bid"),
        Some(&json!(bid.as_str())),
        "the callback's custom._bid"
    );
    check(
        &mut t,
        &bid,
        (3, 0, 0),
        CallbackState::FinishedOk,
        CallbackState::Pending,
        "callback ACKed",
    )
    .await?;

    // --- callbacks wait for COMMIT; an empty batch fires at COMMIT, complete first ----------
    let mut w = Fetcher::connect(
        &url,
        &[
            ("S7Job", Outcome::Ack),
            ("S7Order", Outcome::Ack),
            ("S7OrderOk", Outcome::Ack),
            ("S7Ok", Outcome::Ack),
            ("S7Fails", Outcome::Fail("s7 callback failed")),
        ],
    )
    .await?;
    let mut b = p
        .start_batch(success_batch("orders", "S7OrderOk", "s7cb2"))
        .await
        .ctx("BATCH NEW")?;
    let bid = b.id().clone();
    for i in 0..3 {
        b.add(job("S7Order", "s7o", vec![json!(i)])).await.ctx("add")?;
    }
    for _ in 0..3 {
        w.job(&["s7o"]).await?;
    }
    check(
        &mut t,
        &bid,
        (3, 0, 0),
        CallbackState::Pending,
        CallbackState::Pending,
        "all ACKed, not committed",
    )
    .await?;
    b.commit().await.ctx("BATCH COMMIT")?;
    check(
        &mut p,
        &bid,
        (3, 0, 0),
        CallbackState::Pending,
        CallbackState::Enqueued,
        "right after COMMIT",
    )
    .await?;
    ensure_eq!(w.job(&["s7cb2"]).await?.kind(), "S7OrderOk", "success callback");
    check(
        &mut p,
        &bid,
        (3, 0, 0),
        CallbackState::Pending,
        CallbackState::FinishedOk,
        "success ACKed",
    )
    .await?;

    let b = p
        .start_batch(
            Batch::builder()
                .description("empty")
                .with_callbacks(cb("S7Fails", "s7e"), cb("S7Ok", "s7e")),
        )
        .await
        .ctx("BATCH NEW")?;
    let bid = b.id().clone();
    b.commit().await.ctx("BATCH COMMIT")?;
    check(
        &mut t,
        &bid,
        (0, 0, 0),
        CallbackState::Enqueued,
        CallbackState::Pending,
        "empty, committed",
    )
    .await?;
    ensure_eq!(w.job(&["s7e"]).await?.kind(), "S7Ok", "the complete callback first");
    check(
        &mut t,
        &bid,
        (0, 0, 0),
        CallbackState::FinishedOk,
        CallbackState::Enqueued,
        "complete ACKed",
    )
    .await?;
    ensure_eq!(w.job(&["s7e"]).await?.kind(), "S7Fails", "then the success callback");
    check(
        &mut t,
        &bid,
        (0, 0, 0),
        CallbackState::FinishedOk,
        CallbackState::Enqueued,
        "a failed callback stays 1",
    )
    .await?;

    // --- nesting: three levels, each counting its own jobs ----------------------------------
    let mut parent = p
        .start_batch(success_batch("Parent batch", "S7Ok", "s7n-cb"))
        .await
        .ctx("BATCH NEW parent")?;
    let parent_id = parent.id().clone();
    parent.add(job("S7Job", "s7n", vec![])).await.ctx("add")?;
    let mut child = parent
        .start_batch(success_batch("Child batch", "S7Ok", "s7n-cb"))
        .await
        .ctx("BATCH NEW child")?;
    let child_id = child.id().clone();
    child.add(job("S7Job", "s7n", vec![])).await.ctx("add")?;
    child.add(job("S7Job", "s7n", vec![])).await.ctx("add")?;
    let mut grandchild = child
        .start_batch(success_batch("Grandchild batch", "S7Ok", "s7n-cb"))
        .await
        .ctx("BATCH NEW grandchild")?;
    let grandchild_id = grandchild.id().clone();
    grandchild.add(job("S7Job", "s7n", vec![])).await.ctx("add")?;
    grandchild.commit().await.ctx("COMMIT grandchild")?;
    child.commit().await.ctx("COMMIT child")?;
    parent.commit().await.ctx("COMMIT parent")?;
    for (bid, total, parent_bid, description) in [
        (&parent_id, 1, None, "Parent batch"),
        (&child_id, 2, Some(parent_id.clone()), "Child batch"),
        (&grandchild_id, 1, Some(child_id.clone()), "Grandchild batch"),
    ] {
        let s = status(&mut t, bid).await?;
        ensure_eq!(s.total, total, format!("{description}: total"));
        ensure_eq!(s.parent_bid, parent_bid, format!("{description}: parent_bid"));
        ensure_eq!(s.description.as_deref(), Some(description), "description");
    }
    for _ in 0..4 {
        w.job(&["s7n"]).await.map_err(|e| format!("nested member: {e}"))?;
    }
    // only the grandchild's callback can be there; each ACK releases the next level's
    for (level, bid, total) in [
        ("grandchild", &grandchild_id, 1),
        ("child", &child_id, 2),
        ("parent", &parent_id, 1),
    ] {
        check(
            &mut t,
            bid,
            (total, 0, 0),
            CallbackState::Pending,
            CallbackState::Enqueued,
            level,
        )
        .await?;
        ensure_eq!(w.job(&["s7n-cb"]).await?.kind(), "S7Ok", format!("{level}'s callback"));
        check(
            &mut t,
            bid,
            (total, 0, 0),
            CallbackState::Pending,
            CallbackState::FinishedOk,
            level,
        )
        .await?;
    }

    // --- unknown bids; strict: no reopening from outside ------------------------------------
    ensure!(
        p.open_batch(BatchId::new("non-existent-batch-id"))
            .await
            .ctx("OPEN unknown")?
            .is_none(),
        "OPEN of an unknown bid is Ok(None) (the crate maps `No such batch` to None)"
    );
    let mut b = p
        .start_batch(Batch::builder().with_success_callback(cb("S7Ok", "s7x-cb")))
        .await
        .ctx("BATCH NEW")?;
    let bid = b.id().clone();
    b.add(job("S7Grow", "s7x", vec![json!("grow")])).await.ctx("add")?;
    let status_before = status(&mut t, &bid).await?;
    match status_before.open(&mut p).await {
        Ok(Some(_)) => {}
        other => {
            return Err(format!(
                "OPEN of an uncommitted batch: {:?}",
                other.map(|h| h.is_some())
            ))
        }
    }
    p.open_batch(&bid)
        .await
        .ctx("OPEN")?
        .ok_or("OPEN lost the batch")?
        .commit()
        .await
        .ctx("COMMIT")?;
    match p.open_batch(&bid).await {
        Err(e) if refused_as_outsider(&e, &bid) => {}
        other => {
            return Err(format!(
                "OPEN of a committed batch from outside: {:?}",
                other.map(|h| h.is_some())
            ))
        }
    }

    // --- from within: the batch's own job reopens it and adds a job -------------------------
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let url_owned = url.clone();
    let mut grower = WorkerBuilder::default()
        .register_fn("S7Grow", move |job: Job| {
            let (url, tx) = (url_owned.clone(), tx.clone());
            async move {
                if job.args() != [json!("grow")] {
                    return Ok::<(), io::Error>(());
                }
                let bid = job
                    .custom
                    .get("bid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let result = async {
                    let mut c = Client::connect_to(&url).await.map_err(|e| format!("{e:?}"))?;
                    let mut handle = c
                        .open_batch(BatchId::new(bid))
                        .await
                        .map_err(|e| format!("{e:?}"))?
                        .ok_or("no such batch")?;
                    handle
                        .add(job_with_args(&["leaf"]))
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    handle.commit().await.map_err(|e| format!("{e:?}"))
                }
                .await;
                let _ = tx.send(match result {
                    Ok(()) => "grown".into(),
                    Err(e) => e,
                });
                Ok(())
            }
        })
        .connect_to(&url)
        .await
        .ctx("WorkerBuilder::connect_to")?;
    ensure!(
        grower.run_one(0, &["s7x"]).await.ctx("run_one")?,
        "the growing job was not fetched"
    );
    ensure_eq!(
        rx.try_recv().ok(),
        Some("grown".to_string()),
        "reopening its own batch from within"
    );
    check(
        &mut t,
        &bid,
        (2, 1, 0),
        CallbackState::Pending,
        CallbackState::Pending,
        "grown from within",
    )
    .await?;
    ensure!(
        grower.run_one(0, &["s7x"]).await.ctx("run_one")?,
        "the added job was not fetched"
    );
    check(
        &mut t,
        &bid,
        (2, 0, 0),
        CallbackState::Pending,
        CallbackState::Enqueued,
        "all done",
    )
    .await?;
    Ok(())
}

fn job_with_args(args: &[&str]) -> Job {
    job("S7Grow", "s7x", args.iter().map(|a| json!(a)).collect())
}

/// The crate's `test_batch_can_be_reopened_add_extra_jobs_and_batches_added`, rewritten.
pub async fn s7_reopen() -> Res {
    let policy = env("FAKTORY_BATCH_POLICY")?;
    ensure!(
        policy == "strict" || policy == "permissive",
        "FAKTORY_BATCH_POLICY={policy:?}"
    );
    let url = url()?;
    let mut p = client(&url).await?;
    let mut t = client(&url).await?;

    let mut b = p
        .start_batch(success_batch("Orders processing workload", "S7Ok", "s7r-cb"))
        .await
        .ctx("BATCH NEW")?;
    let bid = b.id().clone();
    b.add(job("S7Order", "s7r", vec![])).await.ctx("add")?;
    b.add(job("S7Order", "s7r", vec![])).await.ctx("add")?;
    check(
        &mut t,
        &bid,
        (2, 2, 0),
        CallbackState::Pending,
        CallbackState::Pending,
        "two jobs",
    )
    .await?;
    ensure!(
        p.open_batch(BatchId::new("non-existent-batch-id"))
            .await
            .ctx("OPEN unknown")?
            .is_none(),
        "unknown bid"
    );

    // an uncommitted batch may be opened
    let status_now = status(&mut t, &bid).await?;
    let mut b = status_now
        .open(&mut p)
        .await
        .ctx("OPEN uncommitted")?
        .ok_or("no batch")?;
    b.add(job("S7Order", "s7r", vec![])).await.ctx("add")?;
    b.commit().await.ctx("COMMIT")?;
    check(
        &mut t,
        &bid,
        (3, 3, 0),
        CallbackState::Pending,
        CallbackState::Pending,
        "committed",
    )
    .await?;

    // a committed batch, from outside
    let reopened = p.open_batch(&bid).await;
    if policy == "strict" {
        return match reopened {
            Err(e) if refused_as_outsider(&e, &bid) => {
                check(
                    &mut t,
                    &bid,
                    (3, 3, 0),
                    CallbackState::Pending,
                    CallbackState::Pending,
                    "unchanged",
                )
                .await
            }
            other => Err(format!(
                "strict: OPEN from outside gave {:?}",
                other.map(|h| h.is_some())
            )),
        };
    }
    let mut b = reopened.ctx("OPEN committed (permissive)")?.ok_or("no batch")?;
    b.add(job("S7Order", "s7r", vec![])).await.ctx("add")?;
    b.commit().await.ctx("COMMIT again")?;
    check(
        &mut t,
        &bid,
        (4, 4, 0),
        CallbackState::Pending,
        CallbackState::Pending,
        "reopened",
    )
    .await?;

    let mut b = p.open_batch(&bid).await.ctx("OPEN")?.ok_or("no batch")?;
    let nested = b
        .start_batch(
            Batch::builder()
                .description("Orders processing workload. Nested stage")
                .with_callbacks(cb("S7NestedOk", "s7r-ncb"), cb("S7NestedDone", "s7r-ncb")),
        )
        .await
        .ctx("BATCH NEW nested")?;
    let nested_id = nested.id().clone();
    nested.commit().await.ctx("COMMIT nested")?;
    let s = status(&mut t, &nested_id).await?;
    ensure_eq!(s.total, 0, "nested total");
    ensure_eq!(s.parent_bid, Some(bid.clone()), "nested parent_bid");
    ensure_eq!(
        s.complete_callback_state,
        CallbackState::Enqueued,
        "an empty nested batch fires at once"
    );

    // after a callback was enqueued: still accepted, the callback state stays
    let mut b = p
        .open_batch(&nested_id)
        .await
        .ctx("OPEN after the callback")?
        .ok_or("no batch")?;
    b.add(job("S7Late", "s7r-late", vec![]))
        .await
        .ctx("add after the callback")?;
    b.add(job("S7Late", "s7r-late", vec![]))
        .await
        .ctx("add after the callback")?;
    b.commit().await.ctx("COMMIT after the callback")?;
    check(
        &mut t,
        &nested_id,
        (2, 2, 0),
        CallbackState::Enqueued,
        CallbackState::Pending,
        "pushed after the callback",
    )
    .await?;
    Ok(())
}
