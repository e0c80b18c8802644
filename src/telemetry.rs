//! OpenTelemetry traces: tracing's spans, exported over OTLP/HTTP (protobuf) to a collector when
//! `[tracing] otlp_endpoint` is set, and not built at all otherwise.
//!
//! What a trace holds (`docs/tracing.md`): a server span per request (`POST /token`), whose
//! parent is the caller's W3C `traceparent` when it sends one (`http::request_id`); under it
//! spans for client authentication, the policy decision, database lookups and the wait for the
//! write to be durable; and the writer's commit, a span of its own (one commit serves many
//! requests) linked to the spans of the requests it committed. The trace id is written into each
//! audit entry's `detail` (`trace_id`) by `store::Writer`, so an auditor can go from an entry to
//! its trace.
//!
//! The spans below the request are at `debug` level with target `mandate::...`; the exporter
//! takes them whatever `MANDATE_LOG` says, and when tracing is off nothing asks for them, so they
//! cost a level check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use crate::config::TracingConfig;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (set once at start, by [`start`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How long the exporter waits for the collector per batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The exporter; [`Telemetry::shutdown`] sends what is still buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still buffered (waiting at most the export timeout) and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!(error = %e, "traces: the last spans could not be exported");
        }
    }
}

/// The tracing layer that exports this process's spans, and the exporter behind it; `None`
/// when `otlp_endpoint` is unset. Builds no connection: the collector may come up later (spans
/// are dropped, with a warning, while it is down).
pub fn start<S>(
    config: &TracingConfig,
) -> Result<Option<(impl Layer<S> + Send + Sync + 'static, Telemetry)>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("key `tracing.otlp_endpoint`: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // A caller's sampling decision (its `traceparent`) is followed; requests that come
        // without one are sampled at `sample_ratio`.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("mandate");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("mandate", LevelFilter::DEBUG));
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((layer, Telemetry { provider })))
}

/// OTLP/HTTP's traces path under the collector's base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is read).
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

/// Makes `span` a child of the caller's W3C Trace Context (`traceparent`, `tracestate`), when
/// tracing is on and the headers hold a valid one; a malformed header is ignored (the request
/// starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span context of the current span, when tracing is on and it is sampled: what a write
/// carries to the writer (to link its commit) and whose trace id its audit entries record.
pub fn current() -> Option<SpanContext> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Links `span` to the spans of the requests whose writes it commits.
pub fn link(span: &tracing::Span, to: impl Iterator<Item = SpanContext>) {
    for sc in to {
        span.add_link(sc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_under_the_base_url() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
    }
}
