"""The engine's rules, laid out as SPEC is: the trigger table of §3 (``triggers``), one
module per kind of input (``session``, ``customer``, ``sku``, with the cart and browse
activity both scopes share in ``storefront``), and the judging and recording of §2/§4
(``decisions``). ``tactful.core.engine.Engine`` is the one door to them."""
