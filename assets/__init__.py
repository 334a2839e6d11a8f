"""Bundled data: layouts, URDFs and meshes (``twin.paths`` locates them)."""
