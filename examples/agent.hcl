# The examples' agent: the embedded local stack and the offline scripted model.
# For a deployed kit: endpoint = "https://<api-id>.execute-api.<region>.amazonaws.com"
#                     api_key  = env("A3S_API_KEY")
endpoint      = "local"
default_model = "scripted"
