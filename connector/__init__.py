"""dealbridge: turns closed CRM deals into Stripe billing and keeps both sides true."""

__version__ = "0.1.0"
