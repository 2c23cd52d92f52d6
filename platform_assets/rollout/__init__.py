"""Champion against challenger on live traffic: the rollout rules and the paired statistics they rest on."""
