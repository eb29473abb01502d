"""JupyterLab as `make lab` starts it (`jupyter lab --config=jupyter_server_config.py`)."""
c = get_config()  # noqa: F821  (defined by Jupyter when it loads this file)

# A notebook of notebooks/ is saved as committed (no outputs, the committed metadata): it is a dep
# of its DVC stage, so reading and running it in JupyterLab leaves `dvc status` and `git status` clean.
c.ContentsManager.pre_save_hook = "vrlib.stage.pre_save"

# Kernels talk to the server over Unix sockets, not TCP on localhost: nothing to eavesdrop on, and
# no "Kernel is running over TCP without encryption" warning in the terminal.
c.KernelManager.transport = "ipc"
