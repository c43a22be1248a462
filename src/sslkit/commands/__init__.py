"""One module per CLI verb. Each defines ``NAME``, ``add_parser(verbs)`` (which sets ``run`` as the
parser default) and ``run(args) -> exit code``. Register a new verb by adding its module to ``VERBS``."""

VERBS = [
    "sslkit.commands.pretrain",
    "sslkit.commands.sae",
    "sslkit.commands.evaluate",
    "sslkit.commands.finetune",
    "sslkit.commands.taskprior",
    "sslkit.commands.grok",
    "sslkit.commands.align",
    "sslkit.commands.theory",
    "sslkit.commands.noise",
    "sslkit.commands.denoise",
    "sslkit.commands.flops",
    "sslkit.commands.ssti",
    "sslkit.commands.ntps",
    "sslkit.commands.export",
    "sslkit.commands.data",
]
