//! S11: INFO with throttles configured (protocol/spec.md §11.4, A-T14). test_client_rust.py
//! starts this scenario's server with a conf.d holding a `concurrency`, a `worker` and a `rate`
//! throttle, a named limit partitioned by tenant and a yearly cron entry, and pushes a job held
//! on a jid never pushed, so INFO carries `faktory.throttles`, `.limits`, `.cron` and
//! `.workflows`: the crate's strict typed decode (`current_info`) must still accept the
//! document, which keeps its four top-level keys.

use super::*;

pub(crate) async fn s11() -> Res {
    let url = url()?;
    let mut c = client(&url).await?;
    for i in 0..3 {
        c.enqueue(job("S11Job", "bulk", vec![json!(i)]))
            .await
            .ctx("PUSH bulk")?;
    }
    let mut f = Fetcher::connect(&url, &[("S11Job", Outcome::Ack)]).await?;
    f.job(&["bulk"]).await?;

    let state = info(&mut c).await?;
    ensure_eq!(
        queue_size(&state, "bulk"),
        Some(2),
        "INFO queues.bulk after one FETCH + ACK"
    );
    ensure_eq!(state.data.total_processed, 1, "INFO total_processed");

    // The same document, untyped: the throttles are under `faktory`, never at the top level.
    let mut raw = Raw::producer(&url).await?;
    let body = match raw.call("INFO").await? {
        Reply::Bulk(Some(body)) => body,
        other => return Err(format!("INFO gave {other:?}")),
    };
    let doc: Value = serde_json::from_str(&body).ctx("INFO JSON")?;
    let mut keys: Vec<&String> = doc.as_object().ok_or("INFO is not an object")?.keys().collect();
    keys.sort();
    ensure_eq!(
        keys,
        vec!["faktory", "now", "server", "server_utc_time"],
        "INFO top-level keys"
    );
    let throttles = &doc["faktory"]["throttles"];
    ensure_eq!(
        throttles["bulk"]["concurrency"],
        json!(2),
        "faktory.throttles.bulk.concurrency"
    );
    ensure_eq!(
        throttles["image-processing"]["worker"],
        json!(1),
        "faktory.throttles.image-processing.worker"
    );
    ensure_eq!(
        throttles["api"]["rate"]["limit"],
        json!(100),
        "faktory.throttles.api.rate.limit"
    );
    let data = &doc["faktory"];
    ensure_eq!(
        data["limits"]["tenants"]["waiting"],
        json!(0),
        "faktory.limits.tenants.waiting (its one job is held)"
    );
    ensure_eq!(data["cron"]["entries"], json!(1), "faktory.cron.entries");
    ensure_eq!(data["workflows"]["held"], json!(1), "faktory.workflows.held");
    Ok(())
}
