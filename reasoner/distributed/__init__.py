"""Scale-out: the learner sharded with FSDP2 over a ``torch.distributed`` process group, its
ranks as Ray actors (`worker`), driven through the same `reasoner.learner.LearnerAPI` as the
single-process learner (`sharded`); what ranks must agree on goes through a `collective`."""
