"""Settings: the one reader of the process environment.

In:   environment variables (``POSTERN_*`` plus the standard ``AWS_*`` ones,
      which boto3 reads itself).
Out:  an immutable :class:`Settings`, built once per process by
      :func:`get_settings` (``Settings.from_env`` builds one explicitly, for
      tests and for the local stack).
Fails: a malformed number or boolean raises ``ValueError`` naming the
      variable, at start-up rather than in the middle of a session.

Every setting is documented in README.md ("Settings"). Local mode differs
from a deployed stack only by the values of these variables (and by
``AWS_ENDPOINT_URL``); there is no local-mode flag in production code.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

MIB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    """Every knob Postern has. Field comments name the environment variable."""

    # --- identity -----------------------------------------------------------
    hostname: str = "mail.example.test"  # POSTERN_HOSTNAME: our name in banners, Received, DSNs
    region: str = "us-east-1"  # AWS_REGION / AWS_DEFAULT_REGION

    # --- resources (names/URLs as template.yaml creates them) ---------------
    bucket: str = "postern-mail"  # POSTERN_BUCKET
    inbound_queue_url: str = ""  # POSTERN_INBOUND_QUEUE_URL  (gateway -> router)
    store_queue_url: str = ""  # POSTERN_STORE_QUEUE_URL    (router -> store)
    outbound_queue_url: str = ""  # POSTERN_OUTBOUND_QUEUE_URL (router -> deliver)
    ndr_queue_url: str = ""  # POSTERN_NDR_QUEUE_URL      (anyone -> ndr)
    reports_queue_url: str = ""  # POSTERN_REPORTS_QUEUE_URL (router -> reports: DMARC and TLS-RPT reports)
    directory_table: str = "postern-directory"  # POSTERN_DIRECTORY_TABLE
    mail_table: str = "postern-mail"  # POSTERN_MAIL_TABLE
    state_table: str = "postern-state"  # POSTERN_STATE_TABLE (delivery log, limits; TTL)
    spool_prefix: str = "spool/"  # POSTERN_SPOOL_PREFIX (spooled messages; also the stored blob, referenced in place)
    spool_retention_days: int = 14  # POSTERN_SPOOL_RETENTION_DAYS (the pipeline's window: unreferenced spool objects are swept after it)
    message_prefix: str = "msg/"  # POSTERN_MESSAGE_PREFIX (mailbox blobs, refcounted)

    # --- SMTP policy --------------------------------------------------------
    max_message_size: int = 25 * MIB  # POSTERN_MAX_MESSAGE_SIZE (bytes; SIZE)
    max_recipients: int = 100  # POSTERN_MAX_RECIPIENTS
    spool_max_wait: float = 10.0  # POSTERN_SPOOL_MAX_WAIT (seconds the oldest spool call under way may have taken before MAIL gets 451 4.3.2; 0 = never)
    max_sessions: int = 500  # POSTERN_MAX_SESSIONS (per protocol listener)
    smtp_timeout: float = 300.0  # POSTERN_SMTP_TIMEOUT (idle seconds, RFC 5321 §4.5.3.2)
    allow_plaintext_auth: bool = False  # POSTERN_ALLOW_PLAINTEXT_AUTH (AUTH/LOGIN/USER before TLS)

    # --- mail store ---------------------------------------------------------
    default_quota: int = 1024 * MIB  # POSTERN_DEFAULT_QUOTA (bytes per user)
    admin_address: str = ""  # POSTERN_ADMIN_ADDRESS (postmaster@ and abuse@ of every local domain)
    imap_poll_interval: float = 0.5  # POSTERN_IMAP_POLL_INTERVAL (seconds, change watcher without a change feed)
    # --- change feed (postern.feed; FeedFunction -> SNS -> a queue per gateway task) ---------------
    change_topic_arn: str = ""  # POSTERN_CHANGE_TOPIC_ARN (ChangeFeedTopic; empty: no feed, poll every imap_poll_interval)
    change_queue_prefix: str = "postern-feed-"  # POSTERN_CHANGE_QUEUE_PREFIX (the gateway task's own queue: prefix + task id)
    change_feed_poll_interval: float = 60.0  # POSTERN_CHANGE_FEED_POLL_INTERVAL (seconds: the safety-net poll while the feed runs)
    change_feed_mail: bool = True  # POSTERN_CHANGE_FEED_MAIL (false: this task takes credential changes only from the feed)
    trace_sample_rate: float = 0.01  # POSTERN_TRACE_SAMPLE (share of messages traced in X-Ray, 0..1: postern.tracing)

    # --- gateway listeners --------------------------------------------------
    bind: str = "0.0.0.0"  # POSTERN_BIND
    smtp_port: int = 25  # POSTERN_SMTP_PORT
    submission_port: int = 587  # POSTERN_SUBMISSION_PORT
    submissions_port: int = 465  # POSTERN_SUBMISSIONS_PORT (implicit TLS)
    imap_port: int = 143  # POSTERN_IMAP_PORT
    imaps_port: int = 993  # POSTERN_IMAPS_PORT (implicit TLS)
    pop3_port: int = 110  # POSTERN_POP3_PORT
    pop3s_port: int = 995  # POSTERN_POP3S_PORT (implicit TLS)
    managesieve_port: int = 4190  # POSTERN_MANAGESIEVE_PORT (RFC 5804, STARTTLS)
    pop3_timeout: float = 600.0  # POSTERN_POP3_TIMEOUT (idle seconds; RFC 1939 §3: at least 10 minutes)
    pop3_lock_ttl: float = 120.0  # POSTERN_POP3_LOCK_TTL (seconds a dead task's maildrop lock outlives it)
    aws_threads: int = 16  # POSTERN_AWS_THREADS (the one bounded executor)
    health_port: int = 8081  # POSTERN_HEALTH_PORT (GET /healthz for the NLB and ECS health checks; negative = off)
    drain_timeout: float = 90.0  # POSTERN_DRAIN_TIMEOUT (seconds sessions get to finish after SIGTERM; < ECS StopTimeout)
    metrics_interval: float = 60.0  # POSTERN_METRICS_INTERVAL (seconds between OpenSessions EMF lines; 0 = off)
    publish_zone_id: str = ""  # POSTERN_PUBLISH_ZONE_ID (small profile: the gateway's A record, postern_gateway.publish)
    ecs_metadata_uri: str = ""  # ECS_CONTAINER_METADATA_URI_V4 (set by ECS: the task's cluster and service)
    login_fail_delay: float = 1.0  # POSTERN_LOGIN_FAIL_DELAY (seconds after a failed login)
    auth_cache_ttl: float = 120.0  # POSTERN_AUTH_CACHE_TTL (seconds a verified password is remembered; 0 = off)
    auth_queue_wait: float = 15.0  # POSTERN_AUTH_QUEUE_WAIT (seconds a login may wait for a password-check slot before a temporary refusal; 0 = no limit)
    password_checks: int = 4  # POSTERN_PASSWORD_CHECKS (argon2id checks at once, 64 MiB each: the hashing pool's threads)
    preauth_max_bytes: int = 16 * 1024  # POSTERN_PREAUTH_MAX_BYTES (per connection before login; 0 = off)
    work_workers: int = 2  # POSTERN_WORK_WORKERS (processes for CPU-heavy per-command work: SEARCH, SORT, MIME)
    work_seconds: float = 20.0  # POSTERN_WORK_SECONDS (work budget of one command; past it NO [LIMIT])
    work_memory_mb: int = 320  # POSTERN_WORK_MEMORY_MB (RLIMIT_AS of each worker; workers x this + the gateway fit the task)

    # --- TLS ----------------------------------------------------------------
    tls_cert_file: str = ""  # POSTERN_TLS_CERT_FILE (PEM chain)
    tls_key_file: str = ""  # POSTERN_TLS_KEY_FILE (PEM key)
    tls_secret_id: str = ""  # POSTERN_TLS_SECRET_ID (Secrets Manager: {"cert":..,"key":..})
    tls_s3_uri: str = ""  # POSTERN_TLS_S3_URI (s3://bucket/key of one PEM holding chain + key)
    tls_self_signed: bool = False  # POSTERN_TLS_SELF_SIGNED (generate a certificate at start: local stack)
    tls_reload_interval: float = 60.0  # POSTERN_TLS_RELOAD_INTERVAL (seconds between cert file mtime checks; 0 = off)
    tls_secret_poll_interval: float = 300.0  # POSTERN_TLS_SECRET_POLL_INTERVAL (seconds between checks of the TLS secret's version; 0 = off)
    tls_metric_interval: float = 900.0  # POSTERN_TLS_METRIC_INTERVAL (seconds between TlsCertificateDaysLeft metrics; 0 = off)

    # --- inbound authentication and abuse limits (trust) --------------------
    inbound_auth: bool = True  # POSTERN_INBOUND_AUTH (SPF/DKIM/DMARC/ARC on the MX port)
    inbound_auth_skip: tuple[str, ...] = ("127.0.0.0/8", "::1")  # POSTERN_INBOUND_AUTH_SKIP (client nets not checked)
    dnsbl_zones: tuple[str, ...] = ()  # POSTERN_DNSBL_ZONES (zone,...; empty = no DNSBL check)

    # --- spam filtering (rspamd, issue 13) ------------------------------------
    rspamd_url: str = ""  # POSTERN_RSPAMD_URL (the normal worker, http://127.0.0.1:11333; empty = filtering off)
    rspamd_controller_url: str = ""  # POSTERN_RSPAMD_CONTROLLER_URL (learning; empty = no learning here)
    rspamd_timeout: float = 10.0  # POSTERN_RSPAMD_TIMEOUT (seconds per scan; then accepted "unchecked")
    learn_queue_url: str = ""  # POSTERN_LEARN_QUEUE_URL (lessons relayed to the tasks with rspamd; empty = none)
    limits_backend: str = "dynamo"  # POSTERN_LIMITS_BACKEND: dynamo | memory (shared counters)
    max_conn_per_ip: int = 20  # POSTERN_MAX_CONN_PER_IP (concurrent, per gateway process)
    max_sessions_per_user: int = 50  # POSTERN_MAX_SESSIONS_PER_USER (logged-in sessions per account, per process)
    max_idle_per_user: int = 25  # POSTERN_MAX_IDLE_PER_USER (concurrent IMAP IDLE per account, per process)
    auth_fail_window: int = 900  # POSTERN_AUTH_FAIL_WINDOW (seconds; also the lockout length)
    auth_fail_ip_limit: int = 20  # POSTERN_AUTH_FAIL_IP_LIMIT (failures per window per client IP)
    auth_fail_user_limit: int = 10  # POSTERN_AUTH_FAIL_USER_LIMIT (failures per window per account)
    auth_fail_max_delay: float = 8.0  # POSTERN_AUTH_FAIL_MAX_DELAY (cap of the growing delay, seconds)
    send_rate_limit: int = 500  # POSTERN_SEND_RATE_LIMIT (recipients per window per submission user)
    send_rate_window: int = 3600  # POSTERN_SEND_RATE_WINDOW (seconds)

    # --- outbound -----------------------------------------------------------
    outbound_transport: str = "ses"  # POSTERN_OUTBOUND_TRANSPORT: ses | smarthost | mx
    smarthost: str = ""  # POSTERN_SMARTHOST (host:port)
    smarthost_tls: str = "starttls"  # POSTERN_SMARTHOST_TLS: starttls | tls | none
    smarthost_secret_id: str = ""  # POSTERN_SMARTHOST_SECRET_ID ({"username":..,"password":..})
    dns_timeout: float = 5.0  # POSTERN_DNS_TIMEOUT (seconds per lookup)
    dns_nameservers: tuple[str, ...] = ()  # POSTERN_DNS_NAMESERVERS (ip[:port],...; empty = system)
    max_queue_age: int = 5 * 86400  # POSTERN_MAX_QUEUE_AGE (seconds before a failure notice)
    delay_notice_after: int = 4 * 3600  # POSTERN_DELAY_NOTICE_AFTER (seconds)
    dkim_selector: str = "postern"  # POSTERN_DKIM_SELECTOR
    dkim_store: str = "secretsmanager"  # POSTERN_DKIM_STORE: secretsmanager | ssm (where DKIM keys live)
    mx_port: int = 25  # POSTERN_MX_PORT (port of remote MX hosts; tests point it at a fake MX)
    outbound_timeout: float = 30.0  # POSTERN_OUTBOUND_TIMEOUT (seconds per SMTP read/connect, outbound)
    mta_sts: bool = True  # POSTERN_MTA_STS (enforce MTA-STS policies on the mx transport)
    outbound_vpc: bool = False  # POSTERN_OUTBOUND_VPC (deliver runs in the VPC with NAT + EIP: mx allowed)
    retry_hop: int = 900  # POSTERN_RETRY_HOP (longest SQS DelaySeconds per re-enqueue hop, <= 900)
    ses_configuration_set: str = ""  # POSTERN_SES_CONFIGURATION_SET (bounce/complaint/delay events -> NDR)
    ses_mail_from_subdomain: str = "bounce"  # POSTERN_SES_MAIL_FROM_SUBDOMAIN (custom MAIL FROM: <sub>.<domain>)
    srs_secret: tuple[str, ...] = ()  # POSTERN_SRS_SECRET (secret,...: the first signs, all verify)
    srs_secret_id: str = ""  # POSTERN_SRS_SECRET_ID (Secrets Manager secret with the SRS secrets; wins)
    srs_max_age_days: int = 21  # POSTERN_SRS_MAX_AGE_DAYS (bounces to older SRS addresses are refused)

    # --- Sieve (postern.sieve) ----------------------------------------------
    sieve: bool = True  # POSTERN_SIEVE (run the managed and the user's scripts at delivery)
    sieve_max_script_size: int = 64 * 1024  # POSTERN_SIEVE_MAX_SCRIPT_SIZE (bytes per script)
    sieve_max_scripts: int = 10  # POSTERN_SIEVE_MAX_SCRIPTS (scripts per user)
    sieve_max_redirects: int = 4  # POSTERN_SIEVE_MAX_REDIRECTS (redirect actions per script run)
    sieve_body_max: int = 1024 * 1024  # POSTERN_SIEVE_BODY_MAX (bytes of a message a body test reads)
    junk_expire_days: int = 30  # POSTERN_JUNK_EXPIRE_DAYS (Junk messages older than this are removed; 0 = never)

    # --- HTTPS front (functions/https), MTA-STS policy, reports -------------
    mta_sts_mode: str = "testing"  # POSTERN_MTA_STS_MODE: testing | enforce | none (our inbound policy, RFC 8461)
    mta_sts_max_age: int = 7 * 86400  # POSTERN_MTA_STS_MAX_AGE (seconds senders may cache our policy)
    https_origin_secret_id: str = ""  # POSTERN_HTTPS_ORIGIN_SECRET_ID (secret CloudFront sends; wins)
    https_origin_secret: str = ""  # POSTERN_HTTPS_ORIGIN_SECRET (the same value, given directly: local stack)
    presign_expires: int = 300  # POSTERN_PRESIGN_EXPIRES (seconds a JMAP download's presigned S3 GET works)
    upload_url_expires: int = 900  # POSTERN_UPLOAD_URL_EXPIRES (seconds a presigned S3 POST for an upload works)
    token_ttl: int = 3600  # POSTERN_TOKEN_TTL (seconds a bearer token from POST /auth/token lives)
    ticket_ttl: int = 60  # POSTERN_TICKET_TTL (seconds a one-time WebSocket ticket lives)
    push_url: str = ""  # POSTERN_PUSH_URL (the JMAP WebSocket, RFC 8887, the session advertises; "": none)
    push_endpoint: str = ""  # POSTERN_PUSH_ENDPOINT (its @connections callback URL the feed posts to; "": no push)
    profile_signing_secret_id: str = ""  # POSTERN_PROFILE_SIGNING_SECRET_ID ({"cert","key"}: signs .mobileconfig)
    report_max_compressed: int = 4 * MIB  # POSTERN_REPORT_MAX_COMPRESSED (bytes of one report attachment)
    report_max_size: int = 32 * MIB  # POSTERN_REPORT_MAX_SIZE (bytes of one report once decompressed)
    report_max_ratio: int = 100  # POSTERN_REPORT_MAX_RATIO (decompressed / compressed, at most)
    report_retention_days: int = 400  # POSTERN_REPORT_RETENTION_DAYS (summaries kept, state table TTL)

    # --- admin CLI ----------------------------------------------------------
    stack_name: str = ""  # POSTERN_STACK (CloudFormation stack whose Outputs name the resources; `postern --stack`)

    # --- free-form extras other modules read through Settings.extra ---------
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        d = cls()
        return cls(
            hostname=e.get("POSTERN_HOSTNAME", d.hostname),
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or d.region,
            bucket=e.get("POSTERN_BUCKET", d.bucket),
            inbound_queue_url=e.get("POSTERN_INBOUND_QUEUE_URL", d.inbound_queue_url),
            store_queue_url=e.get("POSTERN_STORE_QUEUE_URL", d.store_queue_url),
            outbound_queue_url=e.get("POSTERN_OUTBOUND_QUEUE_URL", d.outbound_queue_url),
            ndr_queue_url=e.get("POSTERN_NDR_QUEUE_URL", d.ndr_queue_url),
            reports_queue_url=e.get("POSTERN_REPORTS_QUEUE_URL", d.reports_queue_url),
            directory_table=e.get("POSTERN_DIRECTORY_TABLE", d.directory_table),
            mail_table=e.get("POSTERN_MAIL_TABLE", d.mail_table),
            state_table=e.get("POSTERN_STATE_TABLE", d.state_table),
            spool_prefix=e.get("POSTERN_SPOOL_PREFIX", d.spool_prefix),
            spool_retention_days=_int(e, "POSTERN_SPOOL_RETENTION_DAYS", d.spool_retention_days),
            message_prefix=e.get("POSTERN_MESSAGE_PREFIX", d.message_prefix),
            max_message_size=_int(e, "POSTERN_MAX_MESSAGE_SIZE", d.max_message_size),
            max_recipients=_int(e, "POSTERN_MAX_RECIPIENTS", d.max_recipients),
            spool_max_wait=_float(e, "POSTERN_SPOOL_MAX_WAIT", d.spool_max_wait),
            max_sessions=_int(e, "POSTERN_MAX_SESSIONS", d.max_sessions),
            smtp_timeout=_float(e, "POSTERN_SMTP_TIMEOUT", d.smtp_timeout),
            allow_plaintext_auth=_bool(e, "POSTERN_ALLOW_PLAINTEXT_AUTH", d.allow_plaintext_auth),
            default_quota=_int(e, "POSTERN_DEFAULT_QUOTA", d.default_quota),
            admin_address=e.get("POSTERN_ADMIN_ADDRESS", d.admin_address),
            imap_poll_interval=_float(e, "POSTERN_IMAP_POLL_INTERVAL", d.imap_poll_interval),
            change_topic_arn=e.get("POSTERN_CHANGE_TOPIC_ARN", d.change_topic_arn),
            change_queue_prefix=e.get("POSTERN_CHANGE_QUEUE_PREFIX", d.change_queue_prefix),
            change_feed_poll_interval=_float(e, "POSTERN_CHANGE_FEED_POLL_INTERVAL", d.change_feed_poll_interval),
            change_feed_mail=_bool(e, "POSTERN_CHANGE_FEED_MAIL", d.change_feed_mail),
            trace_sample_rate=_float(e, "POSTERN_TRACE_SAMPLE", d.trace_sample_rate),
            bind=e.get("POSTERN_BIND", d.bind),
            smtp_port=_int(e, "POSTERN_SMTP_PORT", d.smtp_port),
            submission_port=_int(e, "POSTERN_SUBMISSION_PORT", d.submission_port),
            submissions_port=_int(e, "POSTERN_SUBMISSIONS_PORT", d.submissions_port),
            imap_port=_int(e, "POSTERN_IMAP_PORT", d.imap_port),
            imaps_port=_int(e, "POSTERN_IMAPS_PORT", d.imaps_port),
            pop3_port=_int(e, "POSTERN_POP3_PORT", d.pop3_port),
            pop3s_port=_int(e, "POSTERN_POP3S_PORT", d.pop3s_port),
            managesieve_port=_int(e, "POSTERN_MANAGESIEVE_PORT", d.managesieve_port),
            pop3_timeout=_float(e, "POSTERN_POP3_TIMEOUT", d.pop3_timeout),
            pop3_lock_ttl=_float(e, "POSTERN_POP3_LOCK_TTL", d.pop3_lock_ttl),
            aws_threads=_int(e, "POSTERN_AWS_THREADS", d.aws_threads),
            health_port=_int(e, "POSTERN_HEALTH_PORT", d.health_port),
            drain_timeout=_float(e, "POSTERN_DRAIN_TIMEOUT", d.drain_timeout),
            metrics_interval=_float(e, "POSTERN_METRICS_INTERVAL", d.metrics_interval),
            publish_zone_id=e.get("POSTERN_PUBLISH_ZONE_ID", d.publish_zone_id),
            ecs_metadata_uri=e.get("ECS_CONTAINER_METADATA_URI_V4", d.ecs_metadata_uri),
            login_fail_delay=_float(e, "POSTERN_LOGIN_FAIL_DELAY", d.login_fail_delay),
            auth_cache_ttl=_float(e, "POSTERN_AUTH_CACHE_TTL", d.auth_cache_ttl),
            auth_queue_wait=_float(e, "POSTERN_AUTH_QUEUE_WAIT", d.auth_queue_wait),
            preauth_max_bytes=_int(e, "POSTERN_PREAUTH_MAX_BYTES", d.preauth_max_bytes),
            password_checks=max(1, _int(e, "POSTERN_PASSWORD_CHECKS", d.password_checks)),
            work_workers=_int(e, "POSTERN_WORK_WORKERS", d.work_workers),
            work_seconds=_float(e, "POSTERN_WORK_SECONDS", d.work_seconds),
            work_memory_mb=_int(e, "POSTERN_WORK_MEMORY_MB", d.work_memory_mb),
            tls_cert_file=e.get("POSTERN_TLS_CERT_FILE", d.tls_cert_file),
            tls_key_file=e.get("POSTERN_TLS_KEY_FILE", d.tls_key_file),
            tls_secret_id=e.get("POSTERN_TLS_SECRET_ID", d.tls_secret_id),
            tls_s3_uri=e.get("POSTERN_TLS_S3_URI", d.tls_s3_uri),
            tls_self_signed=_bool(e, "POSTERN_TLS_SELF_SIGNED", d.tls_self_signed),
            tls_reload_interval=_float(e, "POSTERN_TLS_RELOAD_INTERVAL", d.tls_reload_interval),
            tls_secret_poll_interval=_float(e, "POSTERN_TLS_SECRET_POLL_INTERVAL", d.tls_secret_poll_interval),
            tls_metric_interval=_float(e, "POSTERN_TLS_METRIC_INTERVAL", d.tls_metric_interval),
            inbound_auth=_bool(e, "POSTERN_INBOUND_AUTH", d.inbound_auth),
            inbound_auth_skip=_list(e, "POSTERN_INBOUND_AUTH_SKIP", d.inbound_auth_skip),
            dnsbl_zones=_list(e, "POSTERN_DNSBL_ZONES", d.dnsbl_zones),
            rspamd_url=e.get("POSTERN_RSPAMD_URL", d.rspamd_url),
            rspamd_controller_url=e.get("POSTERN_RSPAMD_CONTROLLER_URL", d.rspamd_controller_url),
            rspamd_timeout=_float(e, "POSTERN_RSPAMD_TIMEOUT", d.rspamd_timeout),
            learn_queue_url=e.get("POSTERN_LEARN_QUEUE_URL", d.learn_queue_url),
            limits_backend=e.get("POSTERN_LIMITS_BACKEND", d.limits_backend),
            max_conn_per_ip=_int(e, "POSTERN_MAX_CONN_PER_IP", d.max_conn_per_ip),
            max_sessions_per_user=_int(e, "POSTERN_MAX_SESSIONS_PER_USER", d.max_sessions_per_user),
            max_idle_per_user=_int(e, "POSTERN_MAX_IDLE_PER_USER", d.max_idle_per_user),
            auth_fail_window=_int(e, "POSTERN_AUTH_FAIL_WINDOW", d.auth_fail_window),
            auth_fail_ip_limit=_int(e, "POSTERN_AUTH_FAIL_IP_LIMIT", d.auth_fail_ip_limit),
            auth_fail_user_limit=_int(e, "POSTERN_AUTH_FAIL_USER_LIMIT", d.auth_fail_user_limit),
            auth_fail_max_delay=_float(e, "POSTERN_AUTH_FAIL_MAX_DELAY", d.auth_fail_max_delay),
            send_rate_limit=_int(e, "POSTERN_SEND_RATE_LIMIT", d.send_rate_limit),
            send_rate_window=_int(e, "POSTERN_SEND_RATE_WINDOW", d.send_rate_window),
            outbound_transport=e.get("POSTERN_OUTBOUND_TRANSPORT", d.outbound_transport),
            smarthost=e.get("POSTERN_SMARTHOST", d.smarthost),
            smarthost_tls=e.get("POSTERN_SMARTHOST_TLS", d.smarthost_tls),
            smarthost_secret_id=e.get("POSTERN_SMARTHOST_SECRET_ID", d.smarthost_secret_id),
            dns_timeout=_float(e, "POSTERN_DNS_TIMEOUT", d.dns_timeout),
            dns_nameservers=_list(e, "POSTERN_DNS_NAMESERVERS", d.dns_nameservers),
            max_queue_age=_int(e, "POSTERN_MAX_QUEUE_AGE", d.max_queue_age),
            delay_notice_after=_int(e, "POSTERN_DELAY_NOTICE_AFTER", d.delay_notice_after),
            dkim_selector=e.get("POSTERN_DKIM_SELECTOR", d.dkim_selector),
            stack_name=e.get("POSTERN_STACK", d.stack_name),
            dkim_store=e.get("POSTERN_DKIM_STORE", d.dkim_store),
            mx_port=_int(e, "POSTERN_MX_PORT", d.mx_port),
            outbound_timeout=_float(e, "POSTERN_OUTBOUND_TIMEOUT", d.outbound_timeout),
            mta_sts=_bool(e, "POSTERN_MTA_STS", d.mta_sts),
            outbound_vpc=_bool(e, "POSTERN_OUTBOUND_VPC", d.outbound_vpc),
            retry_hop=_int(e, "POSTERN_RETRY_HOP", d.retry_hop),
            ses_configuration_set=e.get("POSTERN_SES_CONFIGURATION_SET", d.ses_configuration_set),
            ses_mail_from_subdomain=e.get("POSTERN_SES_MAIL_FROM_SUBDOMAIN", d.ses_mail_from_subdomain),
            srs_secret=_list(e, "POSTERN_SRS_SECRET", d.srs_secret),
            srs_secret_id=e.get("POSTERN_SRS_SECRET_ID", d.srs_secret_id),
            srs_max_age_days=_int(e, "POSTERN_SRS_MAX_AGE_DAYS", d.srs_max_age_days),
            sieve=_bool(e, "POSTERN_SIEVE", d.sieve),
            sieve_max_script_size=_int(e, "POSTERN_SIEVE_MAX_SCRIPT_SIZE", d.sieve_max_script_size),
            sieve_max_scripts=_int(e, "POSTERN_SIEVE_MAX_SCRIPTS", d.sieve_max_scripts),
            sieve_max_redirects=_int(e, "POSTERN_SIEVE_MAX_REDIRECTS", d.sieve_max_redirects),
            sieve_body_max=_int(e, "POSTERN_SIEVE_BODY_MAX", d.sieve_body_max),
            junk_expire_days=_int(e, "POSTERN_JUNK_EXPIRE_DAYS", d.junk_expire_days),
            mta_sts_mode=e.get("POSTERN_MTA_STS_MODE", d.mta_sts_mode),
            mta_sts_max_age=_int(e, "POSTERN_MTA_STS_MAX_AGE", d.mta_sts_max_age),
            https_origin_secret_id=e.get("POSTERN_HTTPS_ORIGIN_SECRET_ID", d.https_origin_secret_id),
            https_origin_secret=e.get("POSTERN_HTTPS_ORIGIN_SECRET", d.https_origin_secret),
            presign_expires=_int(e, "POSTERN_PRESIGN_EXPIRES", d.presign_expires),
            upload_url_expires=_int(e, "POSTERN_UPLOAD_URL_EXPIRES", d.upload_url_expires),
            token_ttl=_int(e, "POSTERN_TOKEN_TTL", d.token_ttl),
            ticket_ttl=_int(e, "POSTERN_TICKET_TTL", d.ticket_ttl),
            push_url=e.get("POSTERN_PUSH_URL", d.push_url),
            push_endpoint=e.get("POSTERN_PUSH_ENDPOINT", d.push_endpoint),
            profile_signing_secret_id=e.get("POSTERN_PROFILE_SIGNING_SECRET_ID", d.profile_signing_secret_id),
            report_max_compressed=_int(e, "POSTERN_REPORT_MAX_COMPRESSED", d.report_max_compressed),
            report_max_size=_int(e, "POSTERN_REPORT_MAX_SIZE", d.report_max_size),
            report_max_ratio=_int(e, "POSTERN_REPORT_MAX_RATIO", d.report_max_ratio),
            report_retention_days=_int(e, "POSTERN_REPORT_RETENTION_DAYS", d.report_retention_days),
            extra={k: v for k, v in e.items() if k.startswith("POSTERN_")},
        )

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
