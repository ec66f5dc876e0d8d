"""Dataverse's error answers: ``{"error": {"code", "message"}}`` with an HTTP status.

Codes and messages are the Web API's own where they are documented or were observed
(docs/sandboxes.md lists the few that are approximations).
"""

from __future__ import annotations


class DataverseError(Exception):
    """An error the Web API answers; raised anywhere below the HTTP layer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class NotImplementedBySandbox(DataverseError):
    """A request Dataverse would serve but the sandbox does not (HTTP 501, never a 500)."""

    def __init__(self, what: str) -> None:
        super().__init__(501, "0x80040265", f"{what} is not implemented by the Dataverse sandbox")


def not_found(table: str, record_id: str) -> DataverseError:
    return DataverseError(404, "0x80040217", f"{table} With Id = {record_id} Does Not Exist")


def key_not_found(table: str) -> DataverseError:
    return DataverseError(
        404,
        "0x80040217",
        f"A record with the specified key values does not exist in {table} entity",
    )


def no_property(name: str, table: str) -> DataverseError:
    return DataverseError(
        400,
        "0x0",
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table}'.",
    )


def invalid_property(name: str, table: str) -> DataverseError:
    return DataverseError(
        400,
        "0x80060888",
        f"Invalid property '{name}' was found in entity 'Microsoft.Dynamics.CRM.{table}'.",
    )


def segment_not_found(segment: str) -> DataverseError:
    return DataverseError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def bad_json(message: str = "The request body is not valid JSON.") -> DataverseError:
    return DataverseError(400, "0x80060891", message)


def version_mismatch() -> DataverseError:
    return DataverseError(
        412,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


def duplicate_key() -> DataverseError:
    return DataverseError(412, "0x80040237", "A record with matching key values already exists.")
