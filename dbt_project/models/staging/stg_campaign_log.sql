-- Every customer a retention campaign targeted, with the arm: thin renames of the campaign log.
select
    customer_id,
    campaign,
    arm,
    contacted,
    ds as campaign_day
from {{ source('lake', 'campaign_log') }}
