//! Group commit. Every request that must persist something (a token record, audit entries, a
//! revocation) hands it to one writer task and waits; the writer takes everything that is queued,
//! commits it in one transaction, extends the audit chain once for the whole batch, and only then
//! answers each waiting request. Under load, one fsync covers hundreds of requests; at rest, a
//! lone request is committed at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::SpanContext;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{BatchItem, PolicyVersion, SharedStore, StoreError, WriteOutcome};
use crate::audit::{AuditEvent, ChainKey};
use crate::clock::SharedClock;
use crate::metrics::WriterMetrics;

use super::WriteOp;
use super::outbox::Tap;

const MAX_BATCH: usize = 512;
const QUEUE: usize = 8192;
/// How often the writer sums up what it committed (at `debug`, target `mandate::store::writer`).
const TALLY_EVERY: Duration = Duration::from_secs(10);
/// A batch slower than this is logged at `warn`: writes stalled for that long.
const SLOW_BATCH: Duration = Duration::from_millis(100);

/// What the writer committed since its last summary: what an operator (or a benchmark looking
/// for stalls) needs to tell queueing from a slow disk.
struct Tally {
    since: Instant,
    batches: u64,
    items: u64,
    busy: Duration,
    slowest: Duration,
    largest: usize,
}

impl Tally {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            batches: 0,
            items: 0,
            busy: Duration::ZERO,
            slowest: Duration::ZERO,
            largest: 0,
        }
    }

    fn add(&mut self, items: usize, took: Duration) {
        self.batches += 1;
        self.items += items as u64;
        self.busy += took;
        self.slowest = self.slowest.max(took);
        self.largest = self.largest.max(items);
        if took >= SLOW_BATCH {
            tracing::warn!(
                items,
                ms = took.as_millis() as u64,
                "a write batch was slow"
            );
        }
        if self.since.elapsed() >= TALLY_EVERY {
            let secs = self.since.elapsed().as_secs_f64();
            tracing::debug!(
                batches = self.batches,
                items = self.items,
                items_per_s = (self.items as f64 / secs).round(),
                mean_items = self.items / self.batches.max(1),
                largest = self.largest,
                busy_pct = (self.busy.as_secs_f64() / secs * 100.0).round(),
                mean_ms = self.busy.as_secs_f64() * 1000.0 / self.batches.max(1) as f64,
                slowest_ms = self.slowest.as_secs_f64() * 1000.0,
                "writes committed"
            );
            *self = Self::new();
        }
    }
}

/// Counts what a committed batch did: its revocations and the audit entries it wrote (a
/// refused issuance writes none, as `batch::events` decides).
fn count(metrics: &WriterMetrics, items: &[BatchItem], outcomes: &[WriteOutcome]) {
    for (item, outcome) in items.iter().zip(outcomes) {
        let written = !matches!(outcome, WriteOutcome::ParentRevoked);
        let events = item.audit.iter().filter(|_| written);
        metrics.committed(&item.op, outcome, events.map(|e| e.kind.as_str()));
    }
}

type Reply = oneshot::Sender<Result<WriteOutcome, Arc<StoreError>>>;

/// A write waiting for its batch: what to write, who waits for it, and the span of the request
/// that asked (when traces are exported), which the commit's span links to.
struct Queued {
    item: BatchItem,
    reply: Reply,
    trace: Option<SpanContext>,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    clock: SharedClock,
    /// What the items' events signal outside (Shared Signals), if anything is configured.
    tap: Option<Arc<dyn Tap>>,
}

impl Writer {
    /// Starts the writer task; it ends once every `Writer` clone is dropped and the queue is
    /// drained. `key` chains the audit entries (derived once from the KEK, reused per batch).
    pub fn start(
        store: SharedStore,
        clock: SharedClock,
        version: PolicyVersion,
        key: ChainKey,
        metrics: WriterMetrics,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(run(store, clock.clone(), version, key, metrics, rx));
        let writer = Self {
            tx,
            clock,
            tap: None,
        };
        (writer, handle)
    }

    /// Writes through this writer also enqueue what `tap` makes of their events, in their
    /// transaction (set before the writer is cloned).
    pub fn with_tap(mut self, tap: Option<Arc<dyn Tap>>) -> Self {
        self.tap = tap;
        self
    }

    /// Writes waiting for the next batch.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Persists `op` and `audit`; returns once they are durable. When traces are exported, each
    /// audit entry records the trace id of the request that wrote it (`detail.trace_id`).
    pub async fn write(
        &self,
        op: WriteOp,
        mut audit: Vec<AuditEvent>,
    ) -> Result<WriteOutcome, StoreError> {
        let span = tracing::debug_span!("store.write", op = op.name(), events = audit.len());
        let trace = crate::telemetry::current();
        if let Some(sc) = &trace {
            let id = sc.trace_id().to_string();
            for ev in &mut audit {
                if let Some(d) = ev.detail.as_object_mut() {
                    d.insert("trace_id".into(), id.clone().into());
                }
            }
        }
        async move {
            let (reply, wait) = oneshot::channel();
            let mut item = BatchItem::new(op, audit);
            if let Some(tap) = &self.tap {
                item = item.tapped(tap.as_ref(), self.clock.now());
            }
            let signalled = !item.signals.is_empty() || item.on_cut.is_some();
            let queued = Queued {
                item,
                reply,
                trace: crate::telemetry::current().or(trace),
            };
            self.tx
                .send(queued)
                .await
                .map_err(|_| StoreError::WriterClosed)?;
            match wait.await {
                Ok(Ok(o)) => {
                    if let (true, Some(tap)) = (signalled, &self.tap) {
                        tap.enqueued();
                    }
                    Ok(o)
                }
                Ok(Err(e)) => Err(StoreError::Corrupt(format!("batch failed: {e}"))),
                Err(_) => Err(StoreError::WriterClosed),
            }
        }
        .instrument(span)
        .await
    }
}

async fn run(
    store: SharedStore,
    clock: SharedClock,
    version: PolicyVersion,
    key: ChainKey,
    metrics: WriterMetrics,
    mut rx: mpsc::Receiver<Queued>,
) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    let mut traces = Vec::new();
    let mut tally = Tally::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(q) = next.take() {
            items.push(q.item);
            replies.push(q.reply);
            traces.extend(q.trace);
            if items.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let v = version();
        let started = Instant::now();
        // One commit serves many requests: its span is a trace of its own, linked to theirs.
        let span = tracing::debug_span!(parent: None, "writer.commit", items = items.len());
        crate::telemetry::link(&span, traces.drain(..));
        let committed = store
            .commit_batch(&items, clock.now(), v.as_deref(), &key)
            .instrument(span)
            .await;
        tally.add(items.len(), started.elapsed());
        metrics.batch(items.len(), started.elapsed(), committed.is_ok());
        match committed {
            Ok(outcomes) => {
                count(&metrics, &items, &outcomes);
                for (reply, o) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(o));
                }
            }
            Err(e) if items.len() == 1 => {
                tracing::error!(error = %e, "write failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(Arc::new(StoreError::Corrupt(e.to_string()))));
                }
            }
            Err(e) => {
                // One bad item must not fail its neighbours: retry each on its own.
                tracing::warn!(error = %e, size = items.len(), "batch failed; retrying items one by one");
                for (item, reply) in items.iter().zip(replies.drain(..)) {
                    let r = store
                        .commit_batch(std::slice::from_ref(item), clock.now(), v.as_deref(), &key)
                        .await
                        .map_err(Arc::new)
                        .and_then(|mut o| {
                            o.pop()
                                .ok_or_else(|| Arc::new(StoreError::Corrupt("no outcome".into())))
                        });
                    match &r {
                        Ok(o) => count(
                            &metrics,
                            std::slice::from_ref(item),
                            std::slice::from_ref(o),
                        ),
                        Err(e) => tracing::error!(error = %e, "write failed"),
                    }
                    let _ = reply.send(r);
                }
            }
        }
        items.clear();
    }
}
