"""``proxystore-globus-auth``: log in to Globus once per system for `GlobusStore`.

Runs Globus Auth's native app flow: print a URL, the user logs in in a browser
and pastes back the authorization code, and the resulting refresh tokens are
stored in ``$PROXYSTORE_HOME/globus-tokens.json`` (user-only permissions).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import globus_sdk

from proxystore.globus.client import native_app_client, transfer_scope
from proxystore.globus.tokens import TokenFile


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxystore-globus-auth",
        description="Log in to Globus for proxystore's GlobusStore.",
    )
    parser.add_argument(
        "--collection",
        action="append",
        default=[],
        metavar="UUID",
        help=(
            "also consent to data access on this Globus Connect Server v5 "
            "collection (repeatable)"
        ),
    )
    parser.add_argument(
        "--delete",
        action="store_true",
        help="delete the stored Globus tokens instead of logging in",
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="token file to use (default: $PROXYSTORE_HOME/globus-tokens.json)",
    )
    return parser


def login(tokens: TokenFile, collections: Sequence[str] = ()) -> None:
    """Run the native app login flow interactively and store the tokens.

    Raises:
        globus_sdk.AuthAPIError: If Globus Auth rejects the pasted code.
    """
    client = native_app_client()
    client.oauth2_start_flow(transfer_scope(tuple(collections)), refresh_tokens=True)
    print(
        "Please log in to Globus at this URL, then paste the authorization code "
        f"below:\n\n{client.oauth2_get_authorize_url()}\n"
    )
    code = input("Authorization code: ").strip()
    tokens.save(client.oauth2_exchange_code_for_tokens(code))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``proxystore-globus-auth``; return the process exit status."""
    args = _parser().parse_args(argv)
    tokens = TokenFile(args.token_file)
    if args.delete:
        if tokens.delete():
            print(f"Deleted Globus tokens in {tokens.path}")
        else:
            print(f"No Globus tokens to delete in {tokens.path}")
        return 0
    try:
        login(tokens, args.collection)
    except globus_sdk.AuthAPIError as err:
        print(f"Globus login failed: {err.message}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\nGlobus login cancelled", file=sys.stderr)
        return 1
    print(f"Logged in; Globus tokens stored in {tokens.path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
