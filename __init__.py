"""collm-nas: LLM-guided second-stage neural architecture search (CoLLM-NAS) as a LangGraph app.

The repository's top-level folders are this package's subpackages: `collm_nas.spaces`,
`collm_nas.tools`, `collm_nas.agents`, `collm_nas.prompts`, `collm_nas.graph`, `collm_nas.evals`
and the command line `collm_nas.cli`. Importing this package loads nothing heavy.
"""

__version__ = "0.1.0"
