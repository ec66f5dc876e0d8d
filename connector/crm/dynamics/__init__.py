"""Dynamics 365 Sales through the Dataverse Web API v9.2.

``adapter.DynamicsAdapter`` implements ``connector.crm.base.CrmAdapter``; the rest supports it:
``auth`` (msal, one application per process), ``client`` (HTTP, retries, the shared 429
gate in ``throttle``), ``batch`` (``$batch`` wire format), ``query`` (``$select``/``$expand``
from mapping paths), ``push`` (webhooks), ``schema`` (``check_schema``) and ``definitions``
(the tables and columns to create). Setup: ``docs/dynamics-setup.md``.
"""
