"""Control: what an operator changes through the policy REST API.

Experiments and their status machine (:mod:`.experiments`), variants and their model files
(:mod:`.variants`, :mod:`.model_spec`, :mod:`.model_contract`), the immutable allocation
versions that serving reads (:mod:`.allocation_versions`), and the SQL leases that let one
replica at a time run a loop (:mod:`.leases`).
"""
