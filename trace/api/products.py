"""Products of an enterprise."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.records import ProductIn, ProductOut
from trace.extensions import db
from trace.services import records

blp = Blueprint("products", __name__, description="Products")


@blp.route("/products")
class Products(MethodView):
    @blp.response(200, ProductOut(many=True))
    def get(self) -> Any:
        return records.list_products(db(), current_actor())

    @blp.arguments(ProductIn)
    @blp.response(201, ProductOut)
    def post(self, data: dict[str, Any]) -> Any:
        return records.create_product(db(), current_actor(), data)


@blp.route("/products/<int:product_id>")
class ProductItem(MethodView):
    @blp.response(200, ProductOut)
    def get(self, product_id: int) -> Any:
        return records.get_product(db(), current_actor(), product_id)

    @blp.arguments(ProductIn(partial=True))
    @blp.response(200, ProductOut)
    def patch(self, changes: dict[str, Any], product_id: int) -> Any:
        return records.update_product(db(), current_actor(), product_id, changes)
