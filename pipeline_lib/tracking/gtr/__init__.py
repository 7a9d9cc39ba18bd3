"""Global tracking transformer (DREEM-style): association of detections across a window.

``detections`` is the contract between the data (``data``), the network (``model``), training
(``training``) and tracking (``tracker``): every part exchanges :class:`Detections`.
"""
