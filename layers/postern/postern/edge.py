"""The contract between the CloudFront distribution and the HTTPS function, written once.

In:   nothing; constants and one pure function.
Out:  the request headers the edge adds (and the function trusts only when the origin header
      carries the stack's secret): :data:`ORIGIN_HEADER` (a custom origin header CloudFront adds
      to every request, value = the ``HttpsOriginSecret``), :data:`VIEWER_HOST`,
      :data:`VIEWER_IP` (set by the distribution's viewer-request CloudFront Function from the
      ``Host`` header and ``event.viewer.ip``: the API Gateway origin must not receive the
      viewer's Host, and its ``sourceIp`` is CloudFront's, not the client's), :data:`VIEWER_PROTO`
      (only the local adapter sends it: ``http``; deployed, the distribution is HTTPS-only).
      :func:`viewer_function_code` is the CloudFront Function's source; the template carries the
      same text and a test holds them equal; the local adapter (``postern_local.httpfront``)
      plays the same part on 127.0.0.1.
Fails: never.
"""

from __future__ import annotations

ORIGIN_HEADER = "x-postern-origin"
VIEWER_HOST = "x-postern-viewer-host"
VIEWER_IP = "x-postern-viewer-ip"
VIEWER_PROTO = "x-postern-viewer-proto"


def viewer_function_code() -> str:
    """The viewer-request CloudFront Function (cloudfront-js-2.0) of template.yaml's WebViewerFunction."""
    return (
        "function handler(event) {\n"
        "  var r = event.request;\n"
        f"  r.headers['{VIEWER_HOST}'] = {{value: r.headers.host ? r.headers.host.value : ''}};\n"
        f"  r.headers['{VIEWER_IP}'] = {{value: event.viewer.ip}};\n"
        f"  delete r.headers['{VIEWER_PROTO}'];\n"
        "  return r;\n"
        "}\n"
    )
