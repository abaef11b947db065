#!/usr/bin/env python3
"""healthcheck URL [URL...]: exit 0 only if every URL answers 2xx within the timeout.

The images have no curl or wget; this is what compose's healthchecks run. It ignores proxy variables
(a health check is always a local call) and prints why it failed, which `docker inspect` shows.
"""

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 5.0


def main(urls: list[str]) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for url in urls:
        try:
            with opener.open(url, timeout=TIMEOUT_S) as response:
                if not 200 <= response.status < 300:
                    print(f"{url}: HTTP {response.status}")
                    return 1
        except urllib.error.HTTPError as error:
            print(f"{url}: HTTP {error.code} {error.read(300).decode(errors='replace')}")
            return 1
        except (urllib.error.URLError, OSError) as error:
            print(f"{url}: {error}")
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: healthcheck URL [URL...]")
    sys.exit(main(sys.argv[1:]))
