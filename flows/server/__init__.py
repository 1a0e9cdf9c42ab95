"""The ferry server API that ``ferry serve`` exposes to requesters (CI, people without the store or the
master key): scoped API keys, every record naming the key that asked. See ``flows.server.app``."""
