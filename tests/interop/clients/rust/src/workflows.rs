//! S13: job dependencies (protocol/spec.md §14) with the crate's own jobs: `custom.after` set on a
//! built `Job` (the crate lets a producer choose jids, so the dependents can be pushed first).
//! `s13`: a 1 → 100 → 1 fan-out / fan-in pushed last-first; every job runs once, the final one
//! after all 100 others, with 100 outcomes in `custom._after`; the strict INFO decode accepts
//! `faktory.workflows` (the reference's C-T2). `s13-desc`: against a server configured
//! `[faktory_py.results] from_track_desc = true`, a worker reports progress with the crate's
//! `set_progress` desc and ACKs; the dependent reads that desc as the result (C-T10).

use super::*;
use faktory::ent::ProgressUpdate;

fn depending_on(kind: &str, queue: &str, deps: &[&Job]) -> Job {
    let mut job = job(kind, queue, vec![]);
    let ids: Vec<Value> = deps.iter().map(|d| json!(d.id().as_ref() as &str)).collect();
    job.custom.insert("after".into(), Value::Array(ids));
    job
}

async fn held(c: &mut Client, url: &str) -> Res<Value> {
    info(c).await?; // the crate's strict typed decode must accept faktory.workflows
    let mut raw = Raw::producer(url).await?;
    let body = match raw.call("INFO").await? {
        Reply::Bulk(Some(body)) => body,
        other => return Err(format!("INFO gave {other:?}")),
    };
    let doc: Value = serde_json::from_str(&body).ctx("INFO JSON")?;
    Ok(doc["faktory"]["workflows"]["held"].clone())
}

pub(crate) async fn s13() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let root = job("S13Root", "s13", vec![]);
    let pages: Vec<Job> = (0..100).map(|_| depending_on("S13Page", "s13", &[&root])).collect();
    let merge = depending_on("S13Merge", "s13", &pages.iter().collect::<Vec<_>>());
    c.enqueue(merge.clone()).await.ctx("PUSH merge")?;
    for page in &pages {
        c.enqueue(page.clone()).await.ctx("PUSH page")?;
    }
    c.enqueue(root.clone()).await.ctx("PUSH root")?;
    ensure_eq!(
        held(&mut c, &url).await?,
        json!(101),
        "faktory.workflows.held after the pushes"
    );

    let kinds = [
        ("S13Root", Outcome::Ack),
        ("S13Page", Outcome::Ack),
        ("S13Merge", Outcome::Ack),
    ];
    let mut f = Fetcher::connect(&url, &kinds).await?;
    let mut seen: Vec<Job> = Vec::new();
    for _ in 0..102 {
        seen.push(f.job(&["s13"]).await?);
    }
    f.nothing(&["s13"]).await?;
    ensure_eq!(seen[0].id(), root.id(), "the first job to run");
    let last = seen.last().unwrap();
    ensure_eq!(last.id(), merge.id(), "the last job to run");
    let mut ids: Vec<&str> = seen.iter().map(|j| j.id().as_ref()).collect();
    ids.sort();
    ids.dedup();
    ensure_eq!(ids.len(), 102, "distinct jobs run");
    let after = last
        .custom
        .get("_after")
        .and_then(Value::as_object)
        .ok_or("merge has no custom._after")?;
    ensure_eq!(after.len(), 100, "outcomes in custom._after");
    for page in &pages {
        ensure_eq!(
            after.get(page.id().as_ref() as &str),
            Some(&json!({"outcome": "success"})),
            "a page's outcome"
        );
    }
    ensure_eq!(held(&mut c, &url).await?, json!(0), "faktory.workflows.held at the end");
    Ok(())
}

pub(crate) async fn s13_desc() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    let report = job("S13Report", "s13", vec![]);
    let mail = depending_on("S13Mail", "s13", &[&report]);
    c.enqueue(mail.clone()).await.ctx("PUSH mail")?;
    c.enqueue(report.clone()).await.ctx("PUSH report")?;

    let (tx, mut got) = mpsc::unbounded_channel::<Res<Job>>();
    let url_owned = url.clone();
    let tx_mail = tx.clone();
    let mut w = WorkerBuilder::default()
        .register_fn("S13Report", move |job: Job| {
            let url = url_owned.clone();
            let tx = tx.clone();
            async move {
                let result = async {
                    let mut c = client(&url).await?;
                    c.set_progress(
                        ProgressUpdate::builder(job.id().clone())
                            .desc(r#"{"ok":true}"#.to_string())
                            .build(),
                    )
                    .await
                    .ctx("TRACK SET desc from the handler")?;
                    Ok(job)
                }
                .await;
                let _ = tx.send(result);
                Ok::<(), io::Error>(())
            }
        })
        .register_fn("S13Mail", move |job: Job| {
            let tx = tx_mail.clone();
            async move {
                let _ = tx.send(Ok(job));
                Ok::<(), io::Error>(())
            }
        })
        .connect_to(&url)
        .await
        .ctx("WorkerBuilder::connect_to")?;
    for want in [report.id(), mail.id()] {
        ensure!(w.run_one(0, &["s13"]).await.ctx("run_one")?, "no job was fetched");
        let job = got.try_recv().map_err(|_| "the handler did not run".to_string())??;
        ensure_eq!(job.id(), want, "the job run");
        if job.id() == mail.id() {
            let after = job.custom.get("_after").ok_or("mail has no custom._after")?;
            ensure_eq!(
                after,
                &json!({report.id().as_ref() as &str: {"outcome": "success", "result": r#"{"ok":true}"#}}),
                "mail's custom._after"
            );
        }
    }
    Ok(())
}
