"""Retention: what goes and when. Rotation and retention decisions (pure `policy`), the
walk of the tree (`scan`), the deletions (`cleanup`) and the writer's maintenance hooks.

Decides from listings and explicit times; only `cleanup` deletes, and never outside the root.
"""
