"""Example cluster files (shipped as hbdeploy.examples; lab.yml drives `hbdeploy demo`)."""
