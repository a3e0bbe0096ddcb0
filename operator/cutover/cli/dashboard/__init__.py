"""``cutover dashboard``: a local, read-only (unless asked otherwise) web view of Migrations.

``feed`` keeps the Migrations current with a watch and ``history`` remembers their weights and
gate values over time; ``plot`` and ``pages`` turn that into SVG and HTML; ``server`` serves the
pages and pushes changes to them with Server-Sent Events. The JavaScript and CSS in ``static/``
are the project's own small files: the dashboard works offline.
"""
