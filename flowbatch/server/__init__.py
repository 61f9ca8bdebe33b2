"""flowbatch server: a standing batch service that speaks AWS Batch's REST-JSON API.

It sits over the scheduler (`run`) and the store, beside `cli`: the HTTP app and its
routing by botocore's service model, SigV4 checks of every caller, the catalog of
compute environments, queues and job definitions, and the service that turns
SubmitJob into jobs of the one standing scheduler.
"""
