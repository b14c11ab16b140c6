"""The embedded emulator answers no cross-origin request: a web page cannot drive it."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from infra.emulator import Emulator


def _request(endpoint_url: str, method: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    url = urlsplit(endpoint_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    connection.request(
        method, "/", body=b"Action=ListQueues" if method == "POST" else None, headers=headers
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_preflight_and_an_origin_request_get_no_cors_header() -> None:
    origin = "https://evil.example"
    sqs_headers = {
        "Origin": origin,
        "Content-Type": "application/x-www-form-urlencoded",
        # moto picks the service from the credential scope.
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request",
    }
    with Emulator(fixes="none") as emulator:
        preflight = _request(
            emulator.endpoint_url,
            "OPTIONS",
            {
                **sqs_headers,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )
        simple = _request(emulator.endpoint_url, "POST", sqs_headers)
    assert simple.status == 200  # the request reached moto's SQS
    for response in (preflight, simple):
        assert response.getheader("Access-Control-Allow-Origin") is None
        assert response.getheader("Access-Control-Allow-Methods") is None
