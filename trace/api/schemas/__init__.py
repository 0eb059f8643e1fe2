"""marshmallow schemas for the API: one module per resource. Unknown fields are rejected."""
