"""Jinja2 templates of the files hbdeploy manages (shipped as hbdeploy.templates)."""
