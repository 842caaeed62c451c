"""Flask app factory: the feedback page, the label export, health and metrics, and (in front
of them, see receiver.py) the Alertmanager receiver.

gunicorn runs ``coredns_anomaly.webhook.app:create_app()`` (settings from the environment,
see config.py); ``coredns-anomaly webhook serve --dev`` runs the same app on Flask's server.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request, url_for

from coredns_anomaly import __version__
from coredns_anomaly.contracts import names as N
from coredns_anomaly.webhook import chart, metrics
from coredns_anomaly.webhook.auth import Credentials, CsrfTokens
from coredns_anomaly.webhook.config import ConfigError, Settings, load_settings
from coredns_anomaly.webhook.labels import dumps_label_file
from coredns_anomaly.webhook.receiver import Receiver
from coredns_anomaly.webhook.store import AlertFilter, AlertStore, Occurrence, since_key
from coredns_anomaly.webhook.timefmt import parse_rfc3339, storage_key, utcnow

log = logging.getLogger("coredns_anomaly.webhook")

PUBLIC_PATHS = {"/-/healthy", "/-/ready"}
PAGE_SIZE = 100
SINCE_CHOICES = ("1h", "6h", "24h", "7d", "30d", "all")
# The alert-name filter suggests the most frequent names only: any sender can invent names.
MAX_ALERTNAMES = 50


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; refuses (ConfigError) to run without credentials unless told to run open."""
    settings = settings or load_settings()
    _configure_logging(settings)
    credentials = Credentials.from_settings(settings)
    if credentials.open:
        if not settings.allow_unauthenticated:
            raise ConfigError(
                "no credentials configured: set a bearer token file and/or basic auth, "
                "or pass --allow-unauthenticated to run open"
            )
        log.warning(
            "running WITHOUT authentication (allow_unauthenticated): anyone can post alerts and verdicts"
        )
    else:
        log.info("authentication required: %s", " or ".join(credentials.kinds()))

    store = AlertStore(settings.db)
    store.init_schema()
    csrf = CsrfTokens(store.secret())
    store.close()

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.extensions["coredns_anomaly"] = {"settings": settings, "store": store}

    @app.before_request
    def _authenticate() -> Response | None:
        path = request.path
        if path in PUBLIC_PATHS or path.startswith("/static/"):
            return None
        if path == "/metrics" and not settings.metrics_require_auth:
            return None
        principal = credentials.check(request.headers.get("Authorization"))
        if principal is None:
            resp = jsonify(status="error", error="unauthorized")
            resp.status_code = 401
            resp.headers["WWW-Authenticate"] = credentials.challenge()
            return resp
        g.principal = principal
        return None

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if resp.mimetype == "text/html":
            resp.headers["X-Frame-Options"] = "DENY"
            resp.headers["Referrer-Policy"] = "same-origin"
            resp.headers["Content-Security-Policy"] = (
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
            )
            resp.headers["Cache-Control"] = "no-store"
        return resp

    # -- health and metrics ------------------------------------------------------------------

    @app.get("/-/healthy")
    def healthy() -> tuple[str, int]:
        return "OK\n", 200

    @app.get("/-/ready")
    def ready() -> tuple[str, int]:
        problem = store.ready()
        return (f"not ready: {problem}\n", 503) if problem else ("OK\n", 200)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    # -- feedback page -----------------------------------------------------------------------

    @app.get("/")
    def index() -> Response:
        return redirect(url_for("alerts_page"))

    @app.get("/alerts")
    def alerts_page() -> str:
        args = request.args
        since_spec = args.get("since", "7d")
        if since_spec not in SINCE_CHOICES:
            since_spec = "7d"
        page = _int(args.get("page"), 1, 1, 100_000)
        f = AlertFilter(
            status=args.get("status", ""),
            alertname=args.get("alertname", "").strip()[:1000],
            instance=args.get("instance", "").strip(),
            verdict=args.get("verdict", ""),
            since=since_key(since_spec),
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        occurrences, total = store.list_occurrences(f)
        facets = store.facets(MAX_ALERTNAMES)
        classes = sorted(set(settings.anomaly_classes) | set(facets["classes"]))
        filters = {
            "status": f.status,
            "alertname": f.alertname,
            "instance": f.instance,
            "verdict": f.verdict,
            "since": since_spec,
        }
        return render_template(
            "alerts.html",
            rows=[_row_view(o, settings) for o in occurrences],
            total=total,
            page=page,
            pages=max(1, math.ceil(total / PAGE_SIZE)),
            filters=filters,
            since_choices=SINCE_CHOICES,
            alertnames=facets["alertnames"],
            max_alertnames=MAX_ALERTNAMES,
            classes=classes,
            counts=store.counts(),
            csrf_token=csrf.issue(g.principal),
            next_url=request.full_path.rstrip("?"),
            page_url=lambda n: url_for("alerts_page", **{**filters, "page": n}),
            principal=g.principal,
            version=__version__,
        )

    @app.post("/alerts/verdict")
    def post_verdict() -> Response:
        if not _same_origin():
            abort(403, "cross-site request refused")
        form = request.form
        if not csrf.valid(g.principal, form.get("csrf_token", "")):
            abort(403, "missing or expired form token; reload the page and try again")
        fingerprint, starts_at = form.get("fingerprint", ""), form.get("starts_at", "")
        choice = form.get("verdict", "")
        if choice not in (*N.VERDICTS, "clear"):
            abort(400, f"verdict must be {', '.join(N.VERDICTS)} or clear")
        verdict = None if choice == "clear" else choice
        comment = form.get("comment", "").replace("\r\n", "\n")[:1000]
        try:
            found = store.set_verdict(
                fingerprint,
                starts_at,
                verdict,
                anomaly_class=form.get("class", ""),
                comment=comment,
                author=g.principal,
            )
        except ValueError as exc:
            abort(400, str(exc))
        if not found:
            abort(404, "no such alert")
        metrics.VERDICTS.labels(verdict or "cleared").inc()
        target = form.get("next", "")
        if not (target.startswith("/alerts") and "//" not in target and "\\" not in target):
            target = url_for("alerts_page")
        return redirect(f"{target}#{_row_id(fingerprint, starts_at)}", code=303)

    @app.get("/instances/<path:instance>")
    def instance_page(instance: str) -> str:
        """One instance's chart: score and features over time, alerts, verdicts, marks."""
        instance = instance.strip()[:256]
        args = request.args
        start, end, hours = chart.window(args.get("hours"), args.get("end"), utcnow())
        t0, t1 = (
            datetime.fromtimestamp(start, timezone.utc),
            datetime.fromtimestamp(end, timezone.utc),
        )
        data = chart.fetch(settings.prometheus_url, instance, start, end)
        occurrences, _ = store.list_occurrences(
            AlertFilter(instance=instance, since=storage_key(t0), limit=500)
        )
        alerts = [
            (
                parse_rfc3339(o.starts_at).timestamp(),
                parse_rfc3339(o.ends_at or o.last_seen).timestamp(),
                o.verdict or "none",
                f"{o.alertname} ({o.verdict or 'not judged'})",
            )
            for o in occurrences
            if o.instance == instance and parse_rfc3339(o.starts_at) <= t1
        ]
        marks = store.range_labels(instance, since=storage_key(t0), until=storage_key(t1))
        bands = [
            (
                parse_rfc3339(m.start).timestamp(), parse_rfc3339(m.end).timestamp(), m.verdict,
                f"{'anomaly ' + m.anomaly_class if m.verdict == 'anomaly' else 'normal'}: "
                f"{m.comment}",
            )
            for m in marks
        ]  # fmt: skip
        classes = sorted(set(settings.anomaly_classes) | set(store.facets(0)["classes"]))
        return render_template(
            "instance.html",
            instance=instance,
            hours=hours,
            spans=chart.SPANS_HOURS,
            end_text=args.get("end", ""),
            chart=chart.layout(data, start, end, alerts, bands),
            problem=data.problem,
            alerts=[o for o in occurrences if o.instance == instance],
            marks=marks,
            classes=classes,
            csrf_token=csrf.issue(g.principal),
            principal=g.principal,
            version=__version__,
        )

    @app.post("/instances/mark")
    def mark_range() -> Response:
        form = _checked_form()
        instance = form.get("instance", "")
        try:
            start, end = parse_rfc3339(form.get("start", "")), parse_rfc3339(form.get("end", ""))
        except ValueError as exc:
            abort(400, f"start and end must be RFC 3339 times: {exc}")
        verdict = form.get("verdict", "")
        try:
            store.add_range_label(
                instance, start, end, verdict, anomaly_class=form.get("class", ""),
                comment=form.get("comment", "").replace("\r\n", "\n")[:1000],
                author=g.principal,
            )  # fmt: skip
        except ValueError as exc:
            abort(400, str(exc))
        metrics.VERDICTS.labels(f"range_{verdict}").inc()
        return redirect(
            url_for("instance_page", instance=instance, hours=form.get("hours", "6"),
                    end=form.get("back_end", "")),
            code=303,
        )  # fmt: skip

    @app.post("/instances/unmark")
    def unmark_range() -> Response:
        form = _checked_form()
        label_id = _int(form.get("id"), 0, 0, 2**62)
        if not store.delete_range_label(label_id):
            abort(404, "no such marked range")
        metrics.VERDICTS.labels("range_cleared").inc()
        return redirect(
            url_for("instance_page", instance=form.get("instance", ""),
                    hours=form.get("hours", "6"), end=form.get("back_end", "")),
            code=303,
        )  # fmt: skip

    def _checked_form():
        if not _same_origin():
            abort(403, "cross-site request refused")
        if not csrf.valid(g.principal, request.form.get("csrf_token", "")):
            abort(403, "missing or expired form token; reload the page and try again")
        return request.form

    @app.get("/labels")
    def labels_export() -> Response:
        args = request.args
        try:
            records = store.label_records(
                include_weak=args.get("include_weak", "") in ("1", "true", "yes"),
                own_alertnames=settings.own_alertnames,
                weak_matchers=settings.weak_matchers,
                alertname=args.get("alertname", ""),
                since=since_key(args.get("since", "")),
                until=since_key(args.get("until", "")),
            )
        except ValueError as exc:
            abort(400, f"bad time filter: {exc}")
        body = dumps_label_file(records)
        # An attachment, never rendered: the cells hold text any alert sender chose (they are
        # also escaped against spreadsheet formulas, see labels.py).
        return Response(
            body,
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
        )

    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["chart_end"] = _chart_end
    # POST /webhook is served in front of Flask (receiver.py says why).
    app.wsgi_app = Receiver(app.wsgi_app, store, credentials, settings.max_body_bytes)  # type: ignore[method-assign]
    return app


def _chart_end(key: str) -> str:
    """An alert's end as the end of its instance's chart: half an hour after it, to see after."""
    try:
        end = parse_rfc3339(key) + timedelta(minutes=30)
    except ValueError:
        return ""
    return end.strftime("%Y-%m-%dT%H:%M:%SZ")


def _same_origin() -> bool:
    """Refuse form posts a browser marks as cross-site, or whose Origin is another host."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc == request.host
    return True


def _int(text: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(text or default)))
    except ValueError:
        return default


def _row_id(fingerprint: str, starts_at: str) -> str:
    return "a-" + "".join(c for c in f"{fingerprint}-{starts_at}" if c.isalnum() or c == "-")


def _safe_url(url: str) -> str:
    """Only http(s) links from payloads; a javascript: generatorURL must not become a link."""
    return url if urlsplit(url).scheme in ("http", "https") else ""


def _pick(o: Occurrence, *names: str) -> str:
    for name in names:
        value = o.annotations.get(name) or o.labels.get(name)
        if value:
            return value
    return ""


def _score(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text[:32]
    return f"{value:.3g}" if math.isfinite(value) else text[:32]


def _row_view(o: Occurrence, s: Settings) -> dict[str, Any]:
    start = parse_rfc3339(o.starts_at)
    end = parse_rfc3339(o.ends_at or o.last_seen)
    graph = ""
    if s.prometheus_url and o.instance:
        expr = f'{N.SCORE}{{instance="{o.instance}"}}'
        span = max(3600, int((end - start).total_seconds() * 3))
        params = {
            "g0.expr": expr,
            "g0.tab": "0",
            "g0.range_input": f"{span}s",
            "g0.end_input": (end.astimezone(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S"),
        }
        graph = _safe_url(
            f"{s.prometheus_url.rstrip('/')}/graph?{urlencode(params, quote_via=quote)}"
        )
    features = _pick(o, "top_features", "features")
    guess = _pick(o, "anomaly_type", "likely_type", "type")
    return {
        "o": o,
        "id": _row_id(o.fingerprint, o.starts_at),
        "score": _score(_pick(o, "score", "anomaly_score")),
        "anomaly_type": guess,
        # The verdict form starts from the model's guess, unless it has none ("unknown").
        "suggested_class": "" if guess == N.UNKNOWN_TYPE else guess,
        "top_features": [f.strip() for f in features.split(",") if f.strip()][:6],
        "summary": _pick(o, "summary", "description")[:300],
        "duration": _duration((end - start).total_seconds()),
        "generator_url": _safe_url(o.generator_url),
        "alertmanager_url": _safe_url(o.external_url),
        "graph_url": graph,
    }


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


def _when(key: str | None) -> str:
    """Storage key -> '2026-11-22 03:00:00Z' for the page."""
    return f"{key[:10]} {key[11:19]}Z" if key else ""


def _configure_logging(s: Settings) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(s.log_level.upper() if s.log_level.upper() in logging._nameToLevel else "INFO")
