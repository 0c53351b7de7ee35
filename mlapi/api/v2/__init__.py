"""/v2: the Open Inference Protocol (KServe V2). `views` are the endpoints, `codec` the protocol
itself (tensors, binary data, signatures), which knows nothing of Flask."""
