//! Prometheus metrics of `tandem serve`, in a registry owned by the server
//! (no global state, so tests can run several servers in one process).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cluster::PodCounts;
use crate::engine::SkipReason;

/// A label whose value is fixed text: no allocation on the request path.
type Fixed = [(&'static str, &'static str); 1];
/// A label whose value is a name from the templates.
type Named = [(&'static str, String); 1];

pub struct Metrics {
    registry: Registry,
    requests: Family<Fixed, Counter>,
    injections: Family<Named, Counter>,
    skips: Family<Fixed, Counter>,
    duration: Histogram,
    template_reloads: Family<Fixed, Counter>,
    certificate_reloads: Family<Fixed, Counter>,
    client_ca_reloads: Family<Fixed, Counter>,
    pub client_auth_failures: Family<Fixed, Counter>,
    watch_errors: Family<[(&'static str, &'static str); 2], Counter>,
    injected_pods: Family<[(&'static str, String); 2], Gauge>,
    /// The label sets `injected_pods` holds now.
    injected_pod_series: std::sync::Mutex<Vec<[(&'static str, String); 2]>>,
    pub connections_refused: Counter,
    pub certificate_expiry: Gauge,
    pub templates: Gauge,
    pub native_sidecars: Gauge,
}

impl Metrics {
    // Long but flat: one registration per metric, in the order `/metrics`
    // lists them.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tandem");
        let requests = Family::<Fixed, Counter>::default();
        let injections = Family::<Named, Counter>::default();
        let skips = Family::<Fixed, Counter>::default();
        let template_reloads = Family::<Fixed, Counter>::default();
        let certificate_reloads = Family::<Fixed, Counter>::default();
        let client_ca_reloads = Family::<Fixed, Counter>::default();
        let client_auth_failures = Family::<Fixed, Counter>::default();
        let watch_errors = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let connections_refused = Counter::default();
        let injected_pods = Family::<[(&'static str, String); 2], Gauge>::default();
        // Sub-millisecond buckets: the engine answers in microseconds, and
        // mutating webhooks run in sequence on every pod creation.
        let duration = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]);
        let certificate_expiry = Gauge::default();
        let templates = Gauge::default();
        let native_sidecars = Gauge::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by outcome (patched, allowed, denied, invalid, error)",
            requests.clone(),
        );
        registry.register(
            "injections",
            "Templates injected, by template",
            injections.clone(),
        );
        registry.register(
            "skips",
            "Pods or templates skipped, by reason",
            skips.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, body read to response",
            duration.clone(),
        );
        registry.register(
            "template_reloads",
            "Template (re)loads, by result (success, failure)",
            template_reloads.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificate (re)loads, by result (success, failure)",
            certificate_reloads.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix time",
            certificate_expiry.clone(),
        );
        registry.register(
            "client_ca_reloads",
            "--client-ca-file (re)loads, by result (success, failure)",
            client_ca_reloads.clone(),
        );
        registry.register(
            "client_auth_failures",
            "Webhook handshakes refused over the client certificate, by reason (no-certificate, unknown-issuer, expired, invalid-certificate)",
            client_auth_failures.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the cluster watches, by resource and reason (not-found, forbidden, other); each is retried with backoff",
            watch_errors.clone(),
        );
        registry.register(
            "injected_pods",
            "Injected pods that are not finished, by template and state (current; outdated: not as the template is now, a restart would inject them differently or, where the template now refuses a parameter value, not at all); absent while the pod watch fails",
            injected_pods.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed on arrival because --max-connections were open",
            connections_refused.clone(),
        );
        registry.register("templates", "Templates in force", templates.clone());
        registry.register(
            "native_sidecars",
            "1 when native sidecars are used, 0 when not",
            native_sidecars.clone(),
        );
        Metrics {
            registry,
            requests,
            injections,
            skips,
            duration,
            template_reloads,
            certificate_reloads,
            client_ca_reloads,
            client_auth_failures,
            watch_errors,
            injected_pods,
            injected_pod_series: std::sync::Mutex::default(),
            connections_refused,
            certificate_expiry,
            templates,
            native_sidecars,
        }
    }

    pub fn request(&self, outcome: &'static str, seconds: f64) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
        self.duration.observe(seconds);
    }

    pub fn injected(&self, template: &str) {
        self.injections
            .get_or_create(&[("template", template.to_string())])
            .inc();
    }

    pub fn skipped(&self, reason: SkipReason) {
        self.skips
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    pub fn template_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.template_reloads
            .get_or_create(&[("result", result)])
            .inc();
    }

    pub fn certificate_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.certificate_reloads
            .get_or_create(&[("result", result)])
            .inc();
    }

    pub fn client_ca_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.client_ca_reloads
            .get_or_create(&[("result", result)])
            .inc();
    }

    pub fn watch_error(&self, resource: &'static str, reason: &'static str) {
        self.watch_errors
            .get_or_create(&[("resource", resource), ("reason", reason)])
            .inc();
    }

    /// Replaces the injected pod counts; `None` leaves none (unknown).
    /// Series are set, then the vanished ones removed: a scrape in between
    /// never sees the family empty (which would restart an alert's `for`).
    pub fn injected_pods(&self, counts: Option<&PodCounts>) {
        let mut shown = self
            .injected_pod_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut now = Vec::new();
        for ((template, state), n) in counts.into_iter().flatten() {
            let labels = [
                ("template", template.clone()),
                ("state", state.as_str().to_string()),
            ];
            self.injected_pods
                .get_or_create(&labels)
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
            now.push(labels);
        }
        for gone in shown.iter().filter(|l| !now.contains(l)) {
            self.injected_pods.remove(gone);
        }
        *shown = now;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
