"""https - Postern's one HTTPS function: JMAP, client auto-configuration, MTA-STS, tokens, reports.

READS
    API Gateway HTTP API requests (payload format 2.0, the ``$default`` route), which reach it
    through the CloudFront distribution only: every request must carry the origin secret
    (POSTERN_HTTPS_ORIGIN_SECRET_ID) and then the viewer's IP and host from the edge headers are
    trusted (postern.edge). The directory (users, domains, admin role), the state table
    (abuse-limit counters, bearer tokens, report summaries), the origin secret and the profile
    signing secret.
WRITES
    Responses: JSON (errors as RFC 7807 problems, postern_https.errors), XML for the client
    configuration, text/plain for the MTA-STS policy, a configuration profile. The state table:
    login failure counters and known clients (postern.limits), bearer tokens and WebSocket
    tickets (postern.tokens). The directory: a password rehash.
ROUTES
    /.well-known/jmap, /jmap/session, /jmap/api          JMAP (postern_https.routes.jmap)
    /auth/token, /auth/ticket                            tokens (postern_https.routes.auth)
    /mail/config-v1.1.xml, /autodiscover/..., /apple/... client set-up (routes.clientconfig)
    /.well-known/mta-sts.txt                             MTA-STS policy (routes.mtasts)
    /admin/reports/{dmarc,tls}                           report summaries, admins only (routes.reports)
FAILURES
    Nothing is queued, so nothing is retried: every failure is an HTTP answer. A backend fault is
    503 with Retry-After (never a 401), an unexpected exception 500 with the request id (the
    traceback is logged); a request without the origin secret 403; no route 404. Passwords and
    tokens are never logged.
CODE
    postern_https (this function's package), postern.tokens, postern.limits, postern.clientoffer,
    postern.mtasts, postern.reports.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from postern.errors import StoreUnavailable
from postern_https.errors import HttpError, not_found, problem, server_error, unavailable
from postern_https.routes import auth, clientconfig, jmap, mtasts, reports
from postern_https.services import services
from postern_https.viewer import viewer_of

logger = Logger()
tracer = Tracer()

# Bearer tokens travel in the Authorization header, which no browser sends on its own: any origin
# may call the API with one (and the webmail is same-origin anyway). Credentials mode is not allowed.
cors = CORSConfig(allow_origin="*", allow_headers=["Authorization", "Content-Type"],
                  expose_headers=["WWW-Authenticate", "Retry-After"], max_age=600)
app = APIGatewayHttpResolver(cors=cors)
for module in (jmap, auth, clientconfig, mtasts, reports):
    app.include_router(module.router)


def edge(app, next_middleware):
    """Every request: the origin secret checked, then the viewer and the services for the routes."""
    svc = services()
    app.append_context(services=svc, viewer=viewer_of(app.current_event, svc.origin_secret()))
    return next_middleware(app)


app.use(middlewares=[edge])


@app.exception_handler(HttpError)
def http_error(exc: HttpError):
    return problem(exc)


@app.exception_handler(StoreUnavailable)
def backend_error(exc: StoreUnavailable):
    logger.warning("backend unavailable", error=exc.text)
    return problem(unavailable())


@app.not_found
def no_route(exc: NotFoundError):
    return problem(not_found())


@app.exception_handler(Exception)
def unexpected(exc: Exception):
    logger.exception("unexpected error")
    return problem(server_error(app.lambda_context.aws_request_id if app.lambda_context else ""))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    return app.resolve(event, context)
