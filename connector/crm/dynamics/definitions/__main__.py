"""Create dealbridge's Dataverse tables and columns, or print the calls that would.

python -m connector.crm.dynamics.definitions --print
    Print every Web API call (method, path, headers, JSON body) as a JSON list, for an
    admin to review or to run with another tool. Needs no configuration or network.

python -m connector.crm.dynamics.definitions --apply [--config dealbridge.yaml]
    Perform them as the configured application user (crm.dynamics.* and the DYNAMICS_*
    secrets, exactly as dealbridge itself signs in). Whatever already exists is skipped,
    so it is safe to run again. The user needs the System Customizer role (or System
    Administrator) for this one run; see docs/dynamics-setup.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from connector.config import ConfigError, load_config
from connector.crm.base import CrmError, CrmNotFound
from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.client import DataverseClient
from connector.crm.dynamics.definitions import (
    PUBLISHER,
    PUBLISHER_ID,
    Operation,
    operations,
)
from connector.mappings import MappingError, load_mapping

METADATA_TIMEOUT = 300.0


def _exists(client: DataverseClient, op: Operation) -> bool:
    if not op.exists:
        return False
    try:
        data = client.get_json(op.exists)
    except CrmNotFound:
        return False
    if op.exists_item is not None:
        collection, logical_name = op.exists_item
        items = data.get(collection) or []
        return any(isinstance(i, dict) and i.get("LogicalName") == logical_name for i in items)
    if "value" in data:
        return bool(data["value"])
    return True


def _publisher_id(client: DataverseClient) -> str:
    data = client.get_json(
        "publishers", params={"$select": "publisherid", "$filter": f"uniquename eq '{PUBLISHER}'"}
    )
    found = data.get("value") or []
    if not found:
        raise CrmNotFound(f"publisher {PUBLISHER!r} was not created")
    return str(found[0]["publisherid"])


def _resolve(client: DataverseClient, body: Any) -> Any:
    if isinstance(body, dict):
        return {key: _resolve(client, value) for key, value in body.items()}
    if isinstance(body, str) and PUBLISHER_ID in body:
        return body.replace(PUBLISHER_ID, _publisher_id(client))
    return body


def apply(
    client: DataverseClient, ops: Sequence[Operation], echo: Callable[[str], None] = print
) -> None:
    """Run every operation that is not already done, in order."""
    for op in ops:
        if _exists(client, op):
            echo(f"exists   {op.description}")
            continue
        client.request(
            op.method,
            op.path,
            json_body=_resolve(client, op.body),
            headers=op.headers,
            timeout=METADATA_TIMEOUT,
        )
        echo(f"created  {op.description}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connector.crm.dynamics.definitions",
        description="Create (or print) the Dataverse tables and columns dealbridge needs.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--print", action="store_true", help="print the Web API calls as JSON")
    mode.add_argument("--apply", action="store_true", help="perform them as the application user")
    parser.add_argument("--config", help="dealbridge config file (default: DEALBRIDGE_CONFIG)")
    args = parser.parse_args(argv)

    if args.print:
        json.dump([op.as_json() for op in operations()], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0

    try:
        config = load_config(args.config, require_secrets=False)
        mapping = load_mapping(config.mapping_path, "dynamics")
        adapter = DynamicsAdapter.from_config(config, mapping)
        apply(adapter.client, operations())
    except (ConfigError, MappingError) as exc:
        print(f"configuration problem:\n{exc}", file=sys.stderr)
        return 2
    except (CrmError, ValueError) as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    print("done; alternate keys finish building in the background (Keys: Active)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
