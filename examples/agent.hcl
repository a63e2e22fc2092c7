# The examples' agent: the embedded local stack and the offline scripted model.
# For a deployed kit: endpoint = "https://<api-id>.execute-api.<region>.amazonaws.com"
#                     api_key  = env("A3S_API_KEY")
# A3S Code's own model settings work too (README, "The config file"), e.g.
#   default_model = "openai/gpt-4o"
#   providers "openai" { models "gpt-4o" {} }   # endpoint and key: the deployment's OpenAIBaseUrl / OpenAIApiKey
endpoint      = "local"
default_model = "scripted"
