"""Local stand-ins for Stripe, Salesforce and Dataverse that speak their real wire protocols.

They let the official clients (stripe-python, simple-salesforce, msal + requests) run offline,
for dealbridge's demo and end-to-end tests. This package never imports dealbridge
(``connector``): the glue that wires the two together lives in ``connector.demo``.
"""
